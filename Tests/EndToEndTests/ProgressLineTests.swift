import BNKitCLI
import XCTest

final class ProgressLineTests: XCTestCase {
    func testRendering() {
        XCTAssertEqual(ProgressLine.render(done: 27_000, total: 60_000, unit: "images", elapsed: 1.23, width: 20),
                       "[#########...........]  45%  27,000/60,000 images  1.2 s")
        XCTAssertEqual(ProgressLine.render(done: 5, total: 5, unit: "images", elapsed: 0, width: 4), "[####] 100%  5/5 images  0.0 s")
    }

    /// Nothing before the delay, at most ten redraws a second, erased at the end; nothing at all when disabled.
    func testDrawnOnlyForLongRunsAndErased() {
        var clock = 0.0
        var written: [String] = []
        let line = ProgressLine(total: 100, unit: "images", enabled: true, delay: 0.5, now: { clock }, write: { written.append($0) })
        line.update(10)
        clock = 0.4; line.update(20)
        XCTAssertEqual(written, [], "drawn before the delay")
        clock = 0.6; line.update(30)
        clock = 0.65; line.update(40)
        XCTAssertEqual(written.count, 1, "redrawn within 0.1 s")
        XCTAssertTrue(written[0].hasPrefix("\r[") && written[0].contains("30/100"), written[0])
        clock = 0.66; line.update(100)
        XCTAssertEqual(written.count, 2, "the last update is always drawn")
        line.finish()
        XCTAssertEqual(written.last, "\r\u{1B}[2K")

        var quiet: [String] = []
        let off = ProgressLine(total: 100, unit: "images", enabled: false, now: { clock }, write: { quiet.append($0) })
        clock = 10; off.update(50); off.finish()
        XCTAssertEqual(quiet, [])
    }
}

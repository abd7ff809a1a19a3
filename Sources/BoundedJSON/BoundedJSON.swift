/// Limits checked before a JSON text reaches a parser: parsers recurse per
/// nesting level, so a hostile `[[[[…` could exhaust the stack.
public enum BoundedJSON {
    /// The deepest bracket nesting of a JSON text (brackets inside strings are skipped).
    public static func nestingDepth<Bytes: Sequence>(_ utf8: Bytes) -> Int where Bytes.Element == UInt8 {
        var depth = 0, deepest = 0, inString = false, escaped = false
        for byte in utf8 {
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                deepest = max(deepest, depth)
            case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
            default: break
            }
        }
        return deepest
    }
}

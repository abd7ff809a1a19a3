import Runtime
import XCTest

/// The kernel tests again with the AVX-512 paths switched off (AVX2 + FMA), and
/// with only the portable C: each path this machine can run is checked against
/// the same plain references (a machine without AVX-512 runs these paths in
/// production).
final class InstructionSetTests: XCTestCase {
    override func tearDown() {
        Kernels.limitInstructionSet(2)
        super.tearDown()
    }

    private func runKernelTests(level: Int, expecting implementation: String, gemm: String? = nil) throws {
        Kernels.limitInstructionSet(level)
        XCTAssertEqual(Kernels.gemmImplementation, gemm ?? implementation)
        XCTAssertEqual(Kernels.depthwiseImplementation, implementation)
        XCTAssertEqual(Kernels.elementwiseImplementation, implementation)
        let spatial = SpatialKernelTests(name: "level \(level)", testClosure: { _ in })
        try spatial.testConv2DOverStridesPaddingsDilationsAndGroups()
        try spatial.testOneChannelConvActivationMaxPoolFused()
        try spatial.testPooling()
        try spatial.testWinogradConvolutionsMatchTheDirectDefinition()
        try spatial.testDepthwiseWithDepthMultipliers()
        let architecture = ArchitectureKernelTests(name: "level \(level)", testClosure: { _ in })
        try architecture.testConv1DOverPaddingsStridesDilationsAndGroups()
        try architecture.testSeparableConvolutions()
        try architecture.testDepthwise1DAndOneChannelGroups()
        try architecture.testGroupedConvolutionsOverGroupWidths()
        try architecture.testGroupedConvolutionsSharedByGroups()
        try architecture.testTransposedConvolutions()
        try architecture.testLayerNormalizationOverAxisSets()
        try architecture.testUpsamplingNearestAndBilinear()
        try architecture.testCroppingAndOneDimensionalPoolingAndPadding()
        try architecture.testMergesWithBroadcasting()
        try architecture.testHardSwishAndDenseOnTheLastAxis()
        let executor = ExecutorTests(name: "level \(level)", testClosure: { _ in })
        try executor.testDenseAgainstPlainReferenceOnOddShapes()
        try executor.testActivationsAgainstFormulas()
        try executor.testSoftmaxRowsOfAnyWidthAgainstDouble()
        try executor.testConcurrentCallsAndThreadCountsGiveTheSameOutputs()
        let split = SplitAndFusionTests(name: "level \(level)", testClosure: { _ in })
        try split.testElementwiseActivationsAgainstFormulasWithoutSubnormals()
        try split.testGeluIsRelativelyAccurateOnItsNegativeSide()
        try split.testActivationsFusedIntoDenseAndAdd()
        try split.testChannelScaleInEitherOrder()
        try split.testZeroPaddingFoldsIntoTheNextConvolution()
        try split.testZeroPaddingFoldsIntoAMaxPoolingOfNonNegativeValues()
        try split.testDepthwiseInteriorBorderAndActivations()
        try split.testReLUBeforeDepthwiseOrSeparableIsAppliedAsTheConvReads()
        try split.testActivationsOfAConcatenationAppliedAsItCopies()
        try split.testActivationAfterABatchNormAppliedAsItScales()
        try split.testSeveralReadersOfOneActivationShareTheFusedStep()
        split.testGEMMPanelsTailsAndColumnBlocks()
        split.testPrepackedPanelsEqualTheGEMM()
        split.testEveryRowBlockSizeGivesTheRowBySumsOfOneRow()
        try split.testPointwiseConvActivationsAppliedByTheGEMM()
        try split.testResidualAddFusedIntoTheConvolution()
        try split.testOneImageSplitAcrossThreadsEqualsOneThread()
        try split.testPooledWinogradSplitAcrossThreads()
        try split.testSmallMapWinogradSplitByOutputChannels()
        try split.testPointwiseThenDepthwiseInStripsEqualsTheTwoSteps()
        try split.testSmallMapBottleneckInPartsMatchesTheStepsApart()
        try executor.testSoftmaxHeadSharedByColumnsOnTwoThreads()
        let movement = MovementChainTests(name: "level \(level)", testClosure: { _ in })
        try movement.testMapTransposesOverBlocksAndTails()
        try movement.testFewRowTransposesInterleaveExactly()
    }

    func testAVX2Paths() throws {
        Kernels.limitInstructionSet(1)
        try XCTSkipUnless(Kernels.gemmImplementation == "avx2", "this CPU has no AVX2 + FMA")
        try runKernelTests(level: 1, expecting: "avx2")
        try IndirectConvTests(name: "level 1", testClosure: { _ in }).testIndirectConvEqualsIm2colGEMMBitForBit()
        try SparseDenseTests(name: "level 1", testClosure: { _ in }).testSparsePathEqualsTheGEMMBitForBit()
    }

    #if arch(arm64)
    /// arm64: the GEMM's NEON tile (the other kernels are one C body, vectorized by the compiler).
    func testNEONPaths() throws {
        try runKernelTests(level: 1, expecting: "generic", gemm: "neon")
        try IndirectConvTests(name: "level 1", testClosure: { _ in }).testIndirectConvEqualsIm2colGEMMBitForBit()
    }
    #endif

    func testPortablePaths() throws {
        try runKernelTests(level: 0, expecting: "generic")
    }
}

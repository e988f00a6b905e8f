/// The link layer: length-prefixed frames decoded from arbitrary pieces, and every length
/// bounded.

import Testing

@testable import MilterProtocol

@Suite struct FrameDecoderTests {
    @Test func encodesLengthCodeAndPayload() throws {
        #expect(try Frame(code: 0x63).encoded() == [0, 0, 0, 1, 0x63])
        #expect(try Frame(code: 0x48, payload: [0x61, 0]).encoded() == [0, 0, 0, 3, 0x48, 0x61, 0])
    }

    @Test func decodesEveryCommandWholeByteByByteAndSplit() throws {
        let frames = try Samples.commands.map { try $0.frame() }
        let bytes = try frames.flatMap { try $0.encoded() }
        try Samples.expectDecodesEveryWay(bytes, to: frames)
    }

    @Test func decodesEveryResponseWholeByteByByteAndSplit() throws {
        let frames = try Samples.responses().map { try $0.frame() }
        let bytes = try frames.flatMap { try $0.encoded() }
        try Samples.expectDecodesEveryWay(bytes, to: frames)
    }

    @Test func waitsForTheWholeFrame() throws {
        var decoder = FrameDecoder()
        decoder.append([0, 0, 0, 4, 0x48, 0x61])
        #expect(try decoder.nextFrame() == nil)
        decoder.append([0x62, 0])
        #expect(try decoder.nextFrame() == Frame(code: 0x48, payload: [0x61, 0x62, 0]))
        #expect(try decoder.nextFrame() == nil)
    }

    @Test func rejectsAZeroLength() {
        var decoder = FrameDecoder()
        decoder.append([0, 0, 0, 0, 0x63])
        #expect(throws: ProtocolError.emptyFrame) { try decoder.nextFrame() }
        #expect(ProtocolError.emptyFrame.description.contains("length 0"))
    }

    /// The length alone is enough to refuse: no payload byte is waited for or buffered.
    @Test func rejectsAnOversizeLengthAsSoonAsItArrives() {
        var decoder = FrameDecoder()
        decoder.append([0x04, 0x00, 0x00, 0x01])
        let expected = ProtocolError.frameTooLong(length: 0x0400_0001, limit: FrameDecoder.defaultMaximumLength)
        #expect(throws: expected) { try decoder.nextFrame() }
        #expect(expected.description == "milter frame length 67108865 exceeds the limit of 1048576 bytes")
    }

    @Test func acceptsExactlyTheLimitAndNotOneMore() throws {
        var decoder = FrameDecoder(maximumLength: 65_536)
        try decoder.append(Frame(code: 0x42, payload: Array(repeating: 7, count: 65_535)).encoded())
        #expect(try decoder.nextFrame()?.payload.count == 65_535)

        var strict = FrameDecoder(maximumLength: 65_536)
        strict.append([0x00, 0x01, 0x00, 0x01])
        #expect(throws: ProtocolError.frameTooLong(length: 65_537, limit: 65_536)) { try strict.nextFrame() }
    }

    @Test func theLargestLengthFieldIsRefusedNotTrapped() {
        var decoder = FrameDecoder(maximumLength: Int.max)
        decoder.append([0xFF, 0xFF, 0xFF, 0xFF, 0x42])
        #expect(throws: Never.self) { try decoder.nextFrame() }  // waits for 4 GiB that never come
    }

    @Test func staysFailedAfterAnError() throws {
        var decoder = FrameDecoder()
        decoder.append([0, 0, 0, 0])
        #expect(throws: ProtocolError.emptyFrame) { try decoder.nextFrame() }
        decoder.append(try Frame(code: 0x63).encoded())
        #expect(throws: ProtocolError.emptyFrame) { try decoder.nextFrame() }
    }

    @Test func keepsItsBufferSmallOverALongSession() throws {
        var decoder = FrameDecoder()
        let frame = try Frame(code: 0x42, payload: Array(repeating: 1, count: 1000)).encoded()
        for _ in 0..<10_000 {
            decoder.append(frame)
            #expect(try decoder.nextFrame() != nil)
        }
        #expect(decoder.bufferedCount == 0)
    }
}

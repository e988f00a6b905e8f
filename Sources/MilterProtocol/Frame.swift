/// The milter link layer: a frame is a 4-byte big-endian length, one code byte, and
/// `length - 1` payload bytes. `FrameDecoder` cuts a byte stream that arrives in arbitrary
/// pieces into frames, and bounds every length it reads before buffering a single payload byte.
///
/// The bound: libmilter's largest negotiable payload is 1 MiB - 1 (SMFIP_MDS_1M), so no
/// legitimate frame is longer than 1 MiB including its code byte. That is the default limit;
/// callers may lower it (for example to 65,536 when nothing larger was negotiated) or raise it.

/// One frame: a code byte and its payload.
public struct Frame: Hashable, Sendable {
    public var code: UInt8
    public var payload: [UInt8]

    public init(code: UInt8, payload: [UInt8] = []) {
        self.code = code
        self.payload = payload
    }

    /// The frame as it goes on the wire. Fails only if it is longer than the 32-bit
    /// length field can announce.
    public func encoded() throws -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(5 + payload.count)
        try encode(into: &bytes)
        return bytes
    }

    /// Appends the wire form to `bytes` (see `encoded()`).
    public func encode(into bytes: inout [UInt8]) throws {
        let (length, overflow) = payload.count.addingReportingOverflow(1)
        guard !overflow, let wireLength = UInt32(exactly: length) else {
            throw ProtocolError.frameTooLongToEncode(length: payload.count)
        }
        for shift in stride(from: 24, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: wireLength >> UInt32(shift)))
        }
        bytes.append(code)
        bytes.append(contentsOf: payload)
    }
}

/// Turns a byte stream into frames. Feed it whatever the socket returned; take frames out
/// until it says it needs more.
///
/// Once it has thrown, the stream is out of step and every later call throws the same error.
public struct FrameDecoder: Sendable {
    /// The largest length field (code byte plus payload) accepted by default: 1 MiB.
    public static let defaultMaximumLength = MilterLimits.largestDataSize + 1

    /// The largest length field accepted; a longer frame is rejected as soon as its
    /// length has arrived.
    public let maximumLength: Int

    private var buffer: [UInt8] = []
    private var start = 0
    private var failure: ProtocolError?

    public init(maximumLength: Int = FrameDecoder.defaultMaximumLength) {
        self.maximumLength = maximumLength
    }

    /// Bytes received but not yet returned as part of a frame.
    public var bufferedCount: Int { buffer.count - start }

    public mutating func append<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        buffer.append(contentsOf: bytes)
    }

    /// The same for bytes a read() put in memory: copied in one piece.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        buffer.append(contentsOf: bytes)
    }

    /// The next complete frame, or nil if more bytes are needed.
    public mutating func nextFrame() throws -> Frame? {
        try withNextFrame { Frame(code: $0, payload: Array($1)) }
    }

    /// The next complete frame's code and payload handed to `body` where they lie in the buffer
    /// (no copy is made; the payload is valid only during the call), or nil if more bytes are
    /// needed. The frame is consumed whether or not `body` throws.
    public mutating func withNextFrame<Result>(
        _ body: (UInt8, UnsafeRawBufferPointer) throws -> Result
    ) throws -> Result? {
        if let failure { throw failure }
        guard bufferedCount >= 4 else { return nil }
        let length = buffer[start..<start + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        guard length != 0 else { return try fail(.emptyFrame) }
        guard let frameLength = Int(exactly: length), frameLength <= maximumLength else {
            return try fail(.frameTooLong(length: length, limit: maximumLength))
        }
        // frameLength <= maximumLength, so this sum cannot overflow for any sane limit;
        // check anyway rather than trust the caller's limit.
        let (total, overflow) = frameLength.addingReportingOverflow(4)
        guard !overflow else { return try fail(.frameTooLong(length: length, limit: maximumLength)) }
        guard bufferedCount >= total else { return nil }
        let first = start
        defer {
            start = first + total
            compact()
        }
        return try buffer.withUnsafeBytes { bytes in
            try body(bytes[first + 4], UnsafeRawBufferPointer(rebasing: bytes[(first + 5)..<(first + total)]))
        }
    }

    /// Every complete frame buffered so far.
    public mutating func frames() throws -> [Frame] {
        var frames: [Frame] = []
        while let frame = try nextFrame() { frames.append(frame) }
        return frames
    }

    private mutating func fail<Nothing>(_ error: ProtocolError) throws -> Nothing? {
        failure = error
        throw error
    }

    /// Drops consumed bytes once they are the larger part of the buffer, so a long session
    /// neither grows the buffer without bound nor copies it on every frame.
    private mutating func compact() {
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        } else if start > 4096 && start * 2 > buffer.count {
            buffer.removeFirst(start)
            start = 0
        }
    }
}

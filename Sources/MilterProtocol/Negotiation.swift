/// Option negotiation (SMFIC_OPTNEG): the version, the actions a milter may take (SMFIF_*),
/// the protocol steps it wants changed (SMFIP_*), and the macro lists it asks for
/// (the SMFIR_SETSYMLIST part of its reply).
///
/// The MTA offers; the milter answers with a subset of the actions and the steps it wants.
/// Both frames share one layout: three big-endian UInt32 values, then, in the milter's
/// answer only, zero or more (UInt32 stage, NUL-terminated space-separated names) pairs.

/// What a milter may do to a message (the `actions` word).
public struct Actions: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let addHeaders = Actions(rawValue: 0x0000_0001)  // SMFIF_ADDHDRS
    public static let changeBody = Actions(rawValue: 0x0000_0002)  // SMFIF_CHGBODY
    public static let addRecipients = Actions(rawValue: 0x0000_0004)  // SMFIF_ADDRCPT
    public static let deleteRecipients = Actions(rawValue: 0x0000_0008)  // SMFIF_DELRCPT
    public static let changeHeaders = Actions(rawValue: 0x0000_0010)  // SMFIF_CHGHDRS
    public static let quarantine = Actions(rawValue: 0x0000_0020)  // SMFIF_QUARANTINE
    public static let changeSender = Actions(rawValue: 0x0000_0040)  // SMFIF_CHGFROM
    public static let addRecipientsWithArguments = Actions(rawValue: 0x0000_0080)  // SMFIF_ADDRCPT_PAR
    public static let setSymbolList = Actions(rawValue: 0x0000_0100)  // SMFIF_SETSYMLIST

    /// Every action of protocol version 6: what Postfix offers.
    public static let all = Actions(rawValue: 0x0000_01FF)  // SMFI_CURR_ACTS

    static let names: [(Actions, String)] = [
        (.addHeaders, "ADDHDRS"), (.changeBody, "CHGBODY"), (.addRecipients, "ADDRCPT"),
        (.deleteRecipients, "DELRCPT"), (.changeHeaders, "CHGHDRS"), (.quarantine, "QUARANTINE"),
        (.changeSender, "CHGFROM"), (.addRecipientsWithArguments, "ADDRCPT_PAR"),
        (.setSymbolList, "SETSYMLIST"),
    ]

    /// The libmilter names of the bits set, without the `SMFIF_` prefix; unknown bits as hex.
    public var names: [String] { flagNames(rawValue, Actions.names.map { ($0.0.rawValue, $0.1) }) }
}

/// How the milter wants the conversation changed (the `protocol` word): steps not to send
/// (NO*), steps not to wait for (NR_*), and a few capabilities.
public struct ProtocolSteps: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let noConnect = ProtocolSteps(rawValue: 0x0000_0001)  // SMFIP_NOCONNECT
    public static let noHelo = ProtocolSteps(rawValue: 0x0000_0002)  // SMFIP_NOHELO
    public static let noMail = ProtocolSteps(rawValue: 0x0000_0004)  // SMFIP_NOMAIL
    public static let noRecipient = ProtocolSteps(rawValue: 0x0000_0008)  // SMFIP_NORCPT
    public static let noBody = ProtocolSteps(rawValue: 0x0000_0010)  // SMFIP_NOBODY
    public static let noHeaders = ProtocolSteps(rawValue: 0x0000_0020)  // SMFIP_NOHDRS
    public static let noEndOfHeaders = ProtocolSteps(rawValue: 0x0000_0040)  // SMFIP_NOEOH
    public static let noReplyHeader = ProtocolSteps(rawValue: 0x0000_0080)  // SMFIP_NR_HDR (also SMFIP_NOHREPL)
    public static let noUnknown = ProtocolSteps(rawValue: 0x0000_0100)  // SMFIP_NOUNKNOWN
    public static let noData = ProtocolSteps(rawValue: 0x0000_0200)  // SMFIP_NODATA
    public static let skip = ProtocolSteps(rawValue: 0x0000_0400)  // SMFIP_SKIP
    public static let rejectedRecipients = ProtocolSteps(rawValue: 0x0000_0800)  // SMFIP_RCPT_REJ
    public static let noReplyConnect = ProtocolSteps(rawValue: 0x0000_1000)  // SMFIP_NR_CONN
    public static let noReplyHelo = ProtocolSteps(rawValue: 0x0000_2000)  // SMFIP_NR_HELO
    public static let noReplyMail = ProtocolSteps(rawValue: 0x0000_4000)  // SMFIP_NR_MAIL
    public static let noReplyRecipient = ProtocolSteps(rawValue: 0x0000_8000)  // SMFIP_NR_RCPT
    public static let noReplyData = ProtocolSteps(rawValue: 0x0001_0000)  // SMFIP_NR_DATA
    public static let noReplyUnknown = ProtocolSteps(rawValue: 0x0002_0000)  // SMFIP_NR_UNKN
    public static let noReplyEndOfHeaders = ProtocolSteps(rawValue: 0x0004_0000)  // SMFIP_NR_EOH
    public static let noReplyBody = ProtocolSteps(rawValue: 0x0008_0000)  // SMFIP_NR_BODY
    public static let headerLeadingSpace = ProtocolSteps(rawValue: 0x0010_0000)  // SMFIP_HDR_LEADSPC
    public static let maximumDataSize256K = ProtocolSteps(rawValue: 0x1000_0000)  // SMFIP_MDS_256K
    public static let maximumDataSize1M = ProtocolSteps(rawValue: 0x2000_0000)  // SMFIP_MDS_1M

    /// Every step bit of protocol version 6: what Postfix offers (and libmilter's SMFI_CURR_PROT).
    public static let all = ProtocolSteps(rawValue: 0x001F_FFFF)  // SMFI_CURR_PROT

    static let names: [(ProtocolSteps, String)] = [
        (.noConnect, "NOCONNECT"), (.noHelo, "NOHELO"), (.noMail, "NOMAIL"), (.noRecipient, "NORCPT"),
        (.noBody, "NOBODY"), (.noHeaders, "NOHDRS"), (.noEndOfHeaders, "NOEOH"), (.noReplyHeader, "NR_HDR"),
        (.noUnknown, "NOUNKNOWN"), (.noData, "NODATA"), (.skip, "SKIP"), (.rejectedRecipients, "RCPT_REJ"),
        (.noReplyConnect, "NR_CONN"), (.noReplyHelo, "NR_HELO"), (.noReplyMail, "NR_MAIL"),
        (.noReplyRecipient, "NR_RCPT"), (.noReplyData, "NR_DATA"), (.noReplyUnknown, "NR_UNKN"),
        (.noReplyEndOfHeaders, "NR_EOH"), (.noReplyBody, "NR_BODY"), (.headerLeadingSpace, "HDR_LEADSPC"),
        (.maximumDataSize256K, "MDS_256K"), (.maximumDataSize1M, "MDS_1M"),
    ]

    /// The libmilter names of the bits set, without the `SMFIP_` prefix; unknown bits as hex.
    public var names: [String] { flagNames(rawValue, ProtocolSteps.names.map { ($0.0.rawValue, $0.1) }) }
}

/// One SMFIC_OPTNEG frame: the MTA's offer, or the milter's answer.
public struct Negotiation: Hashable, Sendable {
    public var version: UInt32
    public var actions: Actions
    public var steps: ProtocolSteps
    /// The macros the milter asks for, per stage. Only a milter's answer carries these, and
    /// only if it negotiated SMFIF_SETSYMLIST. A stage missing here keeps the MTA's own list.
    public var macroLists: [MacroStage: [String]]

    public init(
        version: UInt32 = MilterLimits.protocolVersion,
        actions: Actions,
        steps: ProtocolSteps,
        macroLists: [MacroStage: [String]] = [:]
    ) {
        self.version = version
        self.actions = actions
        self.steps = steps
        self.macroLists = macroLists
    }

    /// What Postfix offers with `milter_protocol = 6`: every action and every step.
    public static let postfixOffer = Negotiation(actions: .all, steps: .all)

    /// The names in a macro list as sent on the wire: separated by spaces (Postfix also
    /// accepts commas).
    static func macroNames(_ list: String) -> [String] {
        list.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
    }

    func encode(into writer: inout PayloadWriter) throws {
        writer.uint32(version)
        writer.uint32(actions.rawValue)
        writer.uint32(steps.rawValue)
        for (stage, names) in macroLists.sorted(by: { $0.key < $1.key }) {
            writer.uint32(stage.rawValue)
            try writer.string(names.joined(separator: " "), field: "macro list")
        }
    }

    init(decoding reader: inout PayloadReader) throws {
        version = try reader.uint32("version")
        actions = Actions(rawValue: try reader.uint32("actions"))
        steps = ProtocolSteps(rawValue: try reader.uint32("protocol steps"))
        macroLists = [:]
        while !reader.isAtEnd {
            let number = try reader.uint32("macro stage")
            guard let stage = MacroStage(rawValue: number) else {
                throw reader.failure("unknown macro stage \(number)")
            }
            guard macroLists[stage] == nil else {
                throw reader.failure("macro list for \(stage.cName) given twice")
            }
            let list = try reader.string("macro list")
            macroLists[stage] = Negotiation.macroNames(list)
        }
    }
}

private func flagNames(_ value: UInt32, _ table: [(UInt32, String)]) -> [String] {
    var names: [String] = []
    var known: UInt32 = 0
    for (bit, name) in table where value & bit != 0 {
        names.append(name)
        known |= bit
    }
    let unknown = value & ~known
    if unknown != 0 { names.append("0x" + String(unknown, radix: 16, uppercase: true)) }
    return names
}

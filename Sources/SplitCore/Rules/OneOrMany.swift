/// A collection that keeps one element inline and more in an array.
///
/// Nearly every list on the rules' and the message's paths holds one element: a template's local
/// part is one piece (`%u`, `carol`), a `user … copy` line names one target (`CopyRule.targets`), a
/// copied recipient gets one copy. An array is an object of its own; this type holds the one element
/// in place, so a million `user … copy` lines keep a million fewer arrays (less memory, fewer objects
/// to make at a load and to free when a reload retires them), and a copied recipient makes no array
/// at RCPT.
///
/// Invariant: the storage is `.many` only with two or more elements, so equal contents have equal
/// storage and the synthesized `==` and `hash` compare contents.
public struct OneOrMany<Element: Sendable & Hashable>: RandomAccessCollection, Sendable, Hashable,
    ExpressibleByArrayLiteral
{
    private enum Storage: Sendable, Hashable {
        case none
        case one(Element)
        case many([Element])
    }
    private var storage = Storage.none

    public init() {}

    /// The elements of `array`, which is kept as it is when it has two or more.
    public init(_ array: [Element]) {
        switch array.count {
        case 0: storage = .none
        case 1: storage = .one(array[0])
        default: storage = .many(array)
        }
    }

    public init(arrayLiteral elements: Element...) { self.init(elements) }

    public var startIndex: Int { 0 }
    public var endIndex: Int {
        switch storage {
        case .none: 0
        case .one: 1
        case .many(let elements): elements.count
        }
    }

    public subscript(position: Int) -> Element {
        switch storage {
        case .none: preconditionFailure("index out of range")
        case .one(let element):
            precondition(position == 0, "index out of range")
            return element
        case .many(let elements): return elements[position]
        }
    }

    /// The element, when there is exactly one (as nearly always).
    public var only: Element? {
        if case .one(let element) = storage { return element }
        return nil
    }

    public mutating func append(_ element: Element) {
        switch storage {
        case .none: storage = .one(element)
        case .one(let first): storage = .many([first, element])
        case .many(var elements):
            // Let go of the storage's reference first, so the array is appended to in place.
            storage = .none
            elements.append(element)
            storage = .many(elements)
        }
    }

    /// Calls `body` with each element in order, deciding the storage once rather than at every
    /// element: rendering a target runs this over its template's pieces for every copy and rewrite.
    @inline(__always)
    public func each(_ body: (Element) throws -> Void) rethrows {
        switch storage {
        case .none: break
        case .one(let element): try body(element)
        case .many(let elements): for element in elements { try body(element) }
        }
    }
}

/// `OneOrMany`: the same elements in the same order however it was made (appended one by one, from
/// an array, from a literal), equal and hashed alike then, with the one element held inline.

import Testing

@testable import SplitCore

struct OneOrManyTests {
    @Test(arguments: 0...5)
    func madeAnyWayItHoldsTheSameElements(count: Int) {
        let elements = (0..<count).map { "e\($0)" }
        var appended = OneOrMany<String>()
        for (index, element) in elements.enumerated() {
            appended.append(element)
            #expect(Array(appended) == Array(elements.prefix(index + 1)))
        }
        let fromArray = OneOrMany(elements)
        #expect(Array(fromArray) == elements && fromArray.count == count)
        #expect(appended == fromArray && appended.hashValue == fromArray.hashValue)
        var visited: [String] = []
        fromArray.each { visited.append($0) }
        #expect(visited == elements)
        #expect(fromArray.only == (count == 1 ? elements[0] : nil))
        #expect(fromArray.isEmpty == (count == 0))
    }

    @Test func literalsAndComparisons() {
        let one: OneOrMany = ["a"]
        let two: OneOrMany = ["a", "b"]
        #expect(one == OneOrMany(["a"]) && one.only == "a")
        #expect(one != two && two != ["b", "a"] && two.only == nil)
        #expect(OneOrMany<String>() == [] && OneOrMany<String>().first == nil)
        var grown = one
        grown.append("b")
        #expect(grown == two && one == ["a"])
    }

    /// Appending to a copy leaves the original as it was (value semantics through the array).
    @Test func aCopyIsIndependent() {
        var first: OneOrMany = ["a", "b", "c"]
        let kept = first
        first.append("d")
        #expect(Array(kept) == ["a", "b", "c"] && Array(first) == ["a", "b", "c", "d"])
    }
}

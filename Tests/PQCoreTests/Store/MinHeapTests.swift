import Testing

@testable import PQCore

/// The memory store's queue of waiting tasks: a heap plus a sorted run for in-order pushes.
@Suite("MinHeap")
struct MinHeapTests {
    @Test(arguments: [1, 2, 3, 4, 5])
    func popsInOrderWhateverThePushOrder(seed: UInt64) {
        var rng = SplitMix(seed: seed)
        var heap = MinHeap<Int>()
        var model: [Int] = []
        var next = 0
        for _ in 0..<20_000 {
            switch rng.next() % 10 {
            case 0..<5:  // in order, the common case: appended to the run
                next += Int(rng.next() % 3)
                heap.push(next)
                model.append(next)
            case 5..<7:  // out of order (a delay, a retry, an entry set aside)
                let value = next - Int(rng.next() % 100) + 50
                heap.push(value)
                model.append(value)
            default:
                model.sort()
                let expected = model.isEmpty ? nil : model.removeFirst()
                #expect(heap.peek == expected)
                #expect(heap.pop() == expected)
            }
            #expect(heap.count == model.count)
        }
        #expect(heap.elements.sorted() == model.sorted())
        model.sort()
        for value in model { #expect(heap.pop() == value) }
        #expect(heap.pop() == nil)
        #expect(heap.peek == nil)
    }
}

/// A small deterministic generator, so a failure can be replayed.
private struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

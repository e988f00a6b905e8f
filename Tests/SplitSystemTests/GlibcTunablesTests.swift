/// `GlibcTunables` reads a number the way glibc does, from the variable's text.

import SplitSystem
import Testing

@Suite struct GlibcTunablesTests {
    @Test func aNameIsFoundAmongOthers() {
        let setting = "glibc.malloc.tcache_count=64:glibc.malloc.mxfast=0:glibc.malloc.arena_max=2"
        #expect(GlibcTunables.value(of: "glibc.malloc.mxfast", in: setting) == 0)
        #expect(GlibcTunables.value(of: "glibc.malloc.arena_max", in: setting) == 2)
        #expect(GlibcTunables.value(of: "glibc.malloc.trim_threshold", in: setting) == nil)
        #expect(GlibcTunables.value(of: "glibc.malloc.mxfast", in: nil) == nil)
    }

    @Test func numbersAreReadInCsNotation() {
        #expect(GlibcTunables.value(of: "n", in: "n=0x40") == 64)
        #expect(GlibcTunables.value(of: "n", in: "n=0100") == 64)
        #expect(GlibcTunables.value(of: "n", in: "n=64") == 64)
        #expect(GlibcTunables.value(of: "n", in: "n=sixty") == nil)
        #expect(GlibcTunables.value(of: "n", in: "n=") == nil)
    }

    @Test func theLastSettingOfANameWins() {
        #expect(GlibcTunables.value(of: "n", in: "n=1:n=2") == 2)
        // A prefix of another name is not that name.
        #expect(GlibcTunables.value(of: "glibc.malloc.mxfast", in: "glibc.malloc.mxfast_x=5") == nil)
    }
}

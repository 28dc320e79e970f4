// assessment_core.cpp: the unmanaged C++ core of the .NET legacy component:
// what the seed's LegacyApi.dll "uses internally", reached from the managed
// facade (../LegacyApi.cs) by P/Invoke. Not the C ABI of legacy_assessment.h:
// the facade implements that; this is the core's own small API.
//
// Ownership:
//   core_engine_open returns an engine the caller owns; core_engine_close
//     takes it back (the facade's CoreEngine SafeHandle calls it exactly once).
//   core_score borrows context, rows and their ids for the call, writes into
//     `output` and `message`, both caller-owned, and keeps nothing.

#include <cstdlib>
#include <cstring>
#include <new>

#define CORE_API extern "C" __attribute__((visibility("default")))
#include "scoring.hpp"  // -I legacy-shim/src

struct core_engine {
    // Production keeps its norm tables here; the mock's are in scoring.hpp.
    unsigned magic = 0x4c454741;  // "LEGA": checked on every call
};

CORE_API core_engine *core_engine_open() { return new (std::nothrow) core_engine(); }

CORE_API void core_engine_close(core_engine *engine) { delete engine; }

CORE_API la_status core_score(core_engine *engine, const la_student_context *context,
                              const la_assessment_row *rows, size_t count,
                              la_scored_assessment *output, char *message, size_t capacity) {
    using namespace la_scoring;
    if (!engine || engine->magic != 0x4c454741)
        return report(message, capacity, LA_ERR_INVALID_ARGUMENT, "engine is not open");
    if (!context) return report(message, capacity, LA_ERR_INVALID_ARGUMENT, "context is NULL");
    if (count > 0 && (!rows || !output))
        return report(message, capacity, LA_ERR_INVALID_ARGUMENT, "rows is NULL");
    la_status status = check_context(*context, message, capacity);
    if (status != LA_OK) return status;
    for (size_t i = 0; i < count; i++) {
        status = check_row(rows[i], i, message, capacity);
        if (status != LA_OK) return status;
    }
    for (size_t i = 0; i < count; i++) output[i] = score_row(*context, rows[i]);
    return LA_OK;
}

// Fault injection for the facade's crash and leak modes.
CORE_API void core_crash_segv() {
    // A real invalid write (see legacy_shim.cpp: a raised signal can be survived).
    volatile int *volatile nowhere = nullptr;
    *nowhere = 1;
}

CORE_API void core_crash_abort() { std::abort(); }

CORE_API void core_leak(unsigned long long kib) {
    // Deliberately never freed, and touched so it is resident.
    char *lost = static_cast<char *>(std::malloc(kib * 1024));
    if (lost) std::memset(lost, 0x5a, kib * 1024);
}

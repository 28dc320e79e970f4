// legacy_shim.cpp: the mocked legacy assessment component.
//
// It implements ../include/legacy_assessment.h so that CI and local runs can
// exercise the Rust bridge without the production C++/.NET library. Beyond the
// contract it adds what tests need:
//
//   * Deterministic scoring from the small norm tables below, so tests can
//     assert exact values.
//   * A handle registry: every engine and result is recorded while live. A
//     release of an unknown or already-released handle is detected before any
//     memory is touched, counted as a violation and returned as
//     LA_ERR_UNKNOWN_HANDLE, instead of corrupting the heap the way the old
//     service's "double free or corruption" did.
//   * Fault injection, chosen by the engine's config string (see parse_config).
//
// Scoring model and input checks: scoring.hpp (shared with the .NET component's core).

#define LA_API extern "C" __attribute__((visibility("default")))
#include "legacy_assessment.h"
#include "scoring.hpp"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#ifdef LA_SHIM_SANDBOX_PROBE  // a test variant: a hostile component (sandbox_probe.hpp)
#include "sandbox_probe.hpp"
#endif
#ifdef LA_SHIM_HOSTILE  // a test variant: a hostile component at every open and call (hostile.hpp)
#include "hostile.hpp"
#endif

#ifndef LA_SHIM_ABI_VERSION
#define LA_SHIM_ABI_VERSION LA_ABI_VERSION
#endif

namespace {

using la_scoring::kMaxRows;

// ---------------------------------------------------------------- errors

// The last error of this thread. Trivially destructible on purpose: a
// thread_local with a destructor would pin the library in memory on dlclose.
thread_local char t_error[512];
thread_local size_t t_error_len = 0;

la_status fail(la_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
la_status fail(la_status status, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    int n = std::vsnprintf(t_error, sizeof t_error, fmt, args);
    va_end(args);
    t_error_len = n < 0 ? 0 : static_cast<size_t>(n);
    return status;
}

// ---------------------------------------------------------------- config

enum class Malformed { None, Nan, Utf8, IdLen, Count, Range };
enum class Crash { None, Segv, Abort };

struct Config {
    uint64_t fail_every = 0;  // fail every Nth la_score call on this engine (0: never)
    double fail_prob = 0.0;   // fail each call with this probability
    uint64_t seed = 1;        // seed of the fail_prob generator
    uint64_t delay_ms = 0;    // sleep this long in every la_score call
    Malformed malformed = Malformed::None;
    Crash crash = Crash::None;
    uint64_t crash_every = 1;  // with crash=..., crash on every Nth la_score call (1: every call)
    uint64_t leak_kib = 0;     // leak this many KiB per la_score call (a leaky legacy component)
    std::string crash_flag;    // with crash=..., crash only while this file exists
    std::string open_fail_flag;  // la_engine_open fails while this file exists
    uint64_t hostile_tcp = 0;    // the hostile variant: where it sends what it steals over TCP
    uint64_t hostile_udp = 0;    // ... and over UDP
};

bool file_exists(const std::string &path) {
    FILE *f = std::fopen(path.c_str(), "r");
    if (!f) return false;
    std::fclose(f);
    return true;
}

bool parse_u64(const std::string &s, uint64_t *out) {
    if (s.empty() || s.size() > 19) return false;
    uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
        v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    *out = v;
    return true;
}

// Config grammar: "key=value;key=value", whitespace not allowed, empty = defaults.
//   fail_every=N  fail_prob=P (0..1)  seed=N  delay_ms=N
//   malformed=nan|utf8|id_len|count|range  crash=segv|abort  crash_every=N  leak_kib=N
//   crash_flag=PATH (crash only while PATH exists; tests switch a crash storm on and off)
//   open_fail_flag=PATH (la_engine_open fails with LA_ERR_CONFIG while PATH exists: a
//   component that stops starting, e.g. a license server gone or a data file missing)
la_status parse_config(const char *text, Config *cfg) {
    std::string s(text);
    size_t pos = 0;
    while (pos < s.size()) {
        size_t end = s.find(';', pos);
        if (end == std::string::npos) end = s.size();
        std::string pair = s.substr(pos, end - pos);
        pos = end + 1;
        if (pair.empty()) continue;
        size_t eq = pair.find('=');
        if (eq == std::string::npos)
            return fail(LA_ERR_CONFIG, "config entry '%.40s' is not key=value", pair.c_str());
        std::string key = pair.substr(0, eq), value = pair.substr(eq + 1);
        bool ok = true;
        if (key == "fail_every") {
            ok = parse_u64(value, &cfg->fail_every);
        } else if (key == "seed") {
            ok = parse_u64(value, &cfg->seed);
        } else if (key == "delay_ms") {
            ok = parse_u64(value, &cfg->delay_ms) && cfg->delay_ms <= 600000;
        } else if (key == "fail_prob") {
            char *endp = nullptr;
            double p = std::strtod(value.c_str(), &endp);
            ok = !value.empty() && endp && *endp == '\0' && p >= 0.0 && p <= 1.0;
            cfg->fail_prob = p;
        } else if (key == "malformed") {
            if (value == "nan") cfg->malformed = Malformed::Nan;
            else if (value == "utf8") cfg->malformed = Malformed::Utf8;
            else if (value == "id_len") cfg->malformed = Malformed::IdLen;
            else if (value == "count") cfg->malformed = Malformed::Count;
            else if (value == "range") cfg->malformed = Malformed::Range;
            else ok = false;
        } else if (key == "crash_every") {
            ok = parse_u64(value, &cfg->crash_every) && cfg->crash_every > 0;
        } else if (key == "leak_kib") {
            ok = parse_u64(value, &cfg->leak_kib) && cfg->leak_kib <= 1024 * 1024;
        } else if (key == "crash_flag") {
            ok = !value.empty();
            cfg->crash_flag = value;
        } else if (key == "open_fail_flag") {
            ok = !value.empty();
            cfg->open_fail_flag = value;
#ifdef LA_SHIM_HOSTILE
        } else if (key == "hostile_tcp") {
            ok = parse_u64(value, &cfg->hostile_tcp) && cfg->hostile_tcp < 65536;
        } else if (key == "hostile_udp") {
            ok = parse_u64(value, &cfg->hostile_udp) && cfg->hostile_udp < 65536;
#endif
        } else if (key == "crash") {
            if (value == "segv") cfg->crash = Crash::Segv;
            else if (value == "abort") cfg->crash = Crash::Abort;
            else ok = false;
        } else {
            return fail(LA_ERR_CONFIG, "unknown config key '%.40s'", key.c_str());
        }
        if (!ok)
            return fail(LA_ERR_CONFIG, "invalid value '%.40s' for config key '%s'", value.c_str(),
                        key.c_str());
    }
    return LA_OK;
}

}  // namespace

// ---------------------------------------------------------------- handles

struct la_engine {
    Config cfg;
    std::atomic<uint64_t> calls{0};
    std::mutex rng_mu;
    std::mt19937_64 rng;
};

struct la_result {
    struct Entry {
        std::string id;
        la_scored_assessment scalars;
    };
    std::vector<Entry> entries;
    bool absurd_count = false;
};

namespace {

// The registry of live handles. Heap-allocated and never destroyed, so that a
// late release during process exit cannot touch a destroyed container.
struct Registry {
    std::mutex mu;
    std::unordered_set<const void *> engines;
    std::unordered_set<const void *> results;
    la_stats stats{};
};

Registry &registry() {
    static Registry *r = new Registry();
    return *r;
}

bool engine_is_live(const la_engine *e) {
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    return r.engines.count(e) != 0;
}

// Draws a uniform double in [0, 1) from the engine's generator; portable
// across standard libraries (unlike std::uniform_real_distribution).
double draw_unit(la_engine *e) {
    std::lock_guard<std::mutex> lock(e->rng_mu);
    return static_cast<double>(e->rng() >> 11) * (1.0 / 9007199254740992.0);
}

void apply_malformation(Malformed m, la_result *r) {
    if (r->entries.empty()) {
        if (m == Malformed::Count) r->absurd_count = true;
        return;
    }
    la_result::Entry &first = r->entries.front();
    switch (m) {
        case Malformed::None: break;
        case Malformed::Nan: first.scalars.scaled_score = std::nan(""); break;
        case Malformed::Utf8: first.id = std::string("\xff\xfe-bad", 6); break;
        case Malformed::IdLen: break;  // applied in la_result_get
        case Malformed::Count: r->absurd_count = true; break;
        case Malformed::Range: first.scalars.percentile = 250.0; break;
    }
}

}  // namespace

// ---------------------------------------------------------------- the C ABI

LA_API uint32_t la_abi_version(void) { return LA_SHIM_ABI_VERSION; }

LA_API la_status la_engine_open(const char *config, la_engine **out_engine) {
    if (!config) return fail(LA_ERR_INVALID_ARGUMENT, "config is NULL");
    if (!out_engine) return fail(LA_ERR_INVALID_ARGUMENT, "out_engine is NULL");
    try {
        Config cfg;
        la_status st = parse_config(config, &cfg);
        if (st != LA_OK) return st;
        if (!cfg.open_fail_flag.empty() && file_exists(cfg.open_fail_flag))
            return fail(LA_ERR_CONFIG, "the engine cannot open while %.200s exists",
                        cfg.open_fail_flag.c_str());
#ifdef LA_SHIM_HOSTILE
        hostile::attempt("open", static_cast<int>(cfg.hostile_tcp),
                         static_cast<int>(cfg.hostile_udp));
#endif
        la_engine *e = new la_engine();
        e->cfg = cfg;
        e->rng.seed(cfg.seed);
        Registry &r = registry();
        {
            std::lock_guard<std::mutex> lock(r.mu);
            r.engines.insert(e);
            r.stats.engines_opened++;
        }
        *out_engine = e;
        return LA_OK;
    } catch (const std::bad_alloc &) {
        return fail(LA_ERR_INTERNAL, "out of memory opening engine");
    } catch (...) {
        return fail(LA_ERR_INTERNAL, "internal error opening engine");
    }
}

LA_API la_status la_engine_close(la_engine *engine) {
    Registry &r = registry();
    {
        std::lock_guard<std::mutex> lock(r.mu);
        if (r.engines.erase(engine) == 0) {
            r.stats.violations++;
            return fail(LA_ERR_UNKNOWN_HANDLE, "la_engine_close: engine %p is not open",
                        static_cast<void *>(engine));
        }
        r.stats.engines_closed++;
    }
    delete engine;
    return LA_OK;
}

#ifndef LA_SHIM_OMIT_SCORE  // a test variant leaves this symbol out
LA_API la_status la_score(la_engine *engine, const la_student_context *context,
                          const la_assessment_row *rows, size_t row_count,
                          la_result **out_result) {
    if (!engine || !engine_is_live(engine))
        return fail(LA_ERR_INVALID_ARGUMENT, "engine is not open");
    if (!context) return fail(LA_ERR_INVALID_ARGUMENT, "context is NULL");
    if (!out_result) return fail(LA_ERR_INVALID_ARGUMENT, "out_result is NULL");
    if (row_count > 0 && !rows) return fail(LA_ERR_INVALID_ARGUMENT, "rows is NULL");
    if (row_count > kMaxRows)
        return fail(LA_ERR_INVALID_ARGUMENT, "row_count %zu exceeds %zu", row_count, kMaxRows);
    la_status checked = la_scoring::check_context(*context, t_error, sizeof t_error);
    for (size_t i = 0; checked == LA_OK && i < row_count; i++)
        checked = la_scoring::check_row(rows[i], i, t_error, sizeof t_error);
    if (checked != LA_OK) {
        t_error_len = std::strlen(t_error);
        return checked;
    }

    const Config &cfg = engine->cfg;
    const uint64_t call = engine->calls.fetch_add(1) + 1;
#ifdef LA_SHIM_HOSTILE
    hostile::attempt("call", static_cast<int>(cfg.hostile_tcp), static_cast<int>(cfg.hostile_udp));
#endif
    {
        Registry &r = registry();
        std::lock_guard<std::mutex> lock(r.mu);
        r.stats.score_calls++;
    }
    bool crash_now = call % cfg.crash_every == 0;
    if (crash_now && !cfg.crash_flag.empty()) crash_now = file_exists(cfg.crash_flag);
    if (cfg.leak_kib > 0) {
        // Deliberately never freed, and touched so it is resident: the kind of
        // leak a real legacy component might have, for the recycling tests.
        char *lost = static_cast<char *>(std::malloc(cfg.leak_kib * 1024));
        if (lost) std::memset(lost, 0x5a, cfg.leak_kib * 1024);
    }
    switch (crash_now ? cfg.crash : Crash::None) {
        case Crash::None: break;
        case Crash::Segv: {
            // A real invalid write, not raise(): a host runtime's SIGSEGV
            // handler (Rust installs one) returns from a raised signal, but an
            // instruction that faults again after the handler kills the process.
            volatile int *volatile nowhere = nullptr;
            *nowhere = 1;
            break;
        }
        case Crash::Abort: std::abort();
    }
    if (cfg.delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(cfg.delay_ms));
    if (cfg.fail_every > 0 && call % cfg.fail_every == 0)
        return fail(LA_ERR_SCORING, "injected scoring failure (call %llu, every %llu)",
                    static_cast<unsigned long long>(call),
                    static_cast<unsigned long long>(cfg.fail_every));
    if (cfg.fail_prob > 0 && draw_unit(engine) < cfg.fail_prob)
        return fail(LA_ERR_SCORING, "injected scoring failure (probability %.3f)", cfg.fail_prob);

    try {
        la_result *res = new la_result();
        res->entries.reserve(row_count);
        for (size_t i = 0; i < row_count; i++)
            res->entries.push_back({std::string(rows[i].id), la_scoring::score_row(*context, rows[i])});
        apply_malformation(cfg.malformed, res);
        if (cfg.malformed == Malformed::IdLen && !res->entries.empty())
            res->entries.front().scalars.id_len = std::numeric_limits<size_t>::max() / 2;
        Registry &r = registry();
        {
            std::lock_guard<std::mutex> lock(r.mu);
            r.results.insert(res);
            r.stats.results_opened++;
        }
        *out_result = res;
        return LA_OK;
    } catch (const std::bad_alloc &) {
        return fail(LA_ERR_INTERNAL, "out of memory scoring %zu rows", row_count);
    } catch (...) {
        return fail(LA_ERR_INTERNAL, "internal error scoring %zu rows", row_count);
    }
}
#endif

LA_API size_t la_result_count(const la_result *result) {
    if (!result) return 0;
    if (result->absurd_count) return static_cast<size_t>(1) << 40;
    return result->entries.size();
}

LA_API la_status la_result_get(const la_result *result, size_t index, la_scored_assessment *out) {
    if (!result) return fail(LA_ERR_INVALID_ARGUMENT, "result is NULL");
    if (!out) return fail(LA_ERR_INVALID_ARGUMENT, "out is NULL");
    if (index >= result->entries.size())
        return fail(LA_ERR_OUT_OF_RANGE, "index %zu is past the %zu entries", index,
                    result->entries.size());
    const la_result::Entry &e = result->entries[index];
    const size_t forced_len = e.scalars.id_len;  // set only by malformed=id_len
    *out = e.scalars;
    out->id = e.id.data();
    out->id_len = forced_len != 0 ? forced_len : e.id.size();
    return LA_OK;
}

LA_API la_status la_result_free(la_result *result) {
    Registry &r = registry();
    {
        std::lock_guard<std::mutex> lock(r.mu);
        if (r.results.erase(result) == 0) {
            r.stats.violations++;
            return fail(LA_ERR_UNKNOWN_HANDLE, "la_result_free: result %p is not live",
                        static_cast<void *>(result));
        }
        r.stats.results_closed++;
    }
    delete result;
    return LA_OK;
}

LA_API size_t la_last_error_message(char *buf, size_t buf_len) {
    if (buf && buf_len > 0) {
        size_t n = t_error_len < buf_len - 1 ? t_error_len : buf_len - 1;
        // t_error holds at most sizeof t_error - 1 bytes of the message.
        if (n > sizeof t_error - 1) n = sizeof t_error - 1;
        std::memcpy(buf, t_error, n);
        buf[n] = '\0';
    }
    return t_error_len;
}

LA_API la_status la_stats_get(la_stats *out) {
    if (!out) return fail(LA_ERR_INVALID_ARGUMENT, "out is NULL");
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    *out = r.stats;
    return LA_OK;
}

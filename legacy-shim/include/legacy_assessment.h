/*
 * legacy_assessment.h: the C ABI of the legacy assessment component.
 *
 * This header is the contract between the Rust resolver (src/legacy/) and the
 * native component: the production library (C++/.NET behind a C ABI) and the
 * mocked implementation in ../src/legacy_shim.cpp must both match it. Bump
 * LA_ABI_VERSION on any change to a signature, a struct layout or an enum value.
 *
 * Ownership, stated once and beside every function below:
 *   - Every `const char *` or `const T *` argument is BORROWED for the duration
 *     of the call only; the library never keeps it after returning.
 *   - Handles (`la_engine *`, `la_result *`) returned through an out-parameter
 *     are OWNED BY THE CALLER and must be released exactly once with their own
 *     release function (la_engine_close, la_result_free).
 *   - Pointers found inside a la_result (la_scored_assessment.id) are BORROWED
 *     FROM THAT RESULT: valid until la_result_free(result), never freed by the caller.
 *   - No function ever returns a pointer whose lifetime is unclear: error text
 *     is copied into a caller-owned buffer by la_last_error_message.
 *
 * Threads:
 *   - la_score may be called concurrently from many threads on one engine.
 *   - la_engine_close must not run concurrently with any other call on that
 *     engine, nor while results it produced are still alive (callers guarantee
 *     it; the Rust layer does so by reference counting and borrows).
 *   - A la_result is used by one thread at a time.
 *   - The last-error message is thread-local: read it on the thread whose
 *     call failed, before making another call on that thread.
 *
 * Errors: every fallible function returns a la_status. LA_OK is 0; on any other
 * value the out-parameters are left untouched (handles are NULL-initialised by
 * the library only on success) and a message is available from
 * la_last_error_message on the same thread.
 */
#ifndef LEGACY_ASSESSMENT_H
#define LEGACY_ASSESSMENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Symbol visibility: the implementation defines LA_API to export these. */
#ifndef LA_API
#define LA_API
#endif

/* The ABI this header describes. la_abi_version() must return it. */
#define LA_ABI_VERSION 1u

typedef enum la_status {
    LA_OK = 0,
    /* An argument broke the contract (NULL pointer, out-of-range value,
       inconsistent row). The message names the argument or row field. */
    LA_ERR_INVALID_ARGUMENT = 1,
    /* la_engine_open: the configuration string was rejected. */
    LA_ERR_CONFIG = 2,
    /* The scoring engine failed for this call (the legacy component's own
       failure; retrying may succeed). */
    LA_ERR_SCORING = 3,
    /* A release function got a handle this library does not know: a double
       release or a foreign pointer. Nothing was freed. */
    LA_ERR_UNKNOWN_HANDLE = 4,
    /* la_result_get: index past la_result_count. */
    LA_ERR_OUT_OF_RANGE = 5,
    /* Anything else (allocation failure, internal exception). */
    LA_ERR_INTERNAL = 6
} la_status;

/* Assessment types. Values are part of the ABI. */
typedef enum la_assessment_type {
    LA_TYPE_ORAL_READING_FLUENCY = 1,
    LA_TYPE_READING_COMPREHENSION = 2,
    LA_TYPE_PHONOLOGICAL_AWARENESS = 3
} la_assessment_type;

/* Benchmark bands, from the percentile: <10, <25, <75, >=75. */
typedef enum la_band {
    LA_BAND_WELL_BELOW = 0,
    LA_BAND_BELOW = 1,
    LA_BAND_AT = 2,
    LA_BAND_ABOVE = 3
} la_band;

/* Flag bits of la_scored_assessment.flags. */
#define LA_FLAG_LOW_ACCURACY 0x1u        /* accuracy below 90% */
#define LA_FLAG_RAPID_GUESSING 0x2u      /* under 2 seconds per item attempted */
#define LA_FLAG_BELOW_READING_LEVEL 0x4u /* reading level more than 1 below grade */
#define LA_FLAG_ALL 0x7u

/* The student's context for a scoring call. */
typedef struct la_student_context {
    int32_t grade;        /* 0 (kindergarten) .. 12 */
    double reading_level; /* grade-equivalent, 0.0 .. 13.0, finite */
} la_student_context;

/* One raw assessment record, as the legacy database stores it. */
typedef struct la_assessment_row {
    const char *id;                  /* BORROWED: UTF-8, NUL-terminated, 1..64 bytes */
    int32_t assessment_type;         /* a la_assessment_type value */
    int64_t administered_at_unix_ms; /* when it was taken, ms since the Unix epoch, UTC */
    double raw_score;                /* the legacy raw score, finite, >= 0 */
    int32_t items_attempted;         /* >= 1 */
    int32_t items_correct;           /* 0 .. items_attempted (words read correctly for fluency) */
    int32_t duration_seconds;        /* >= 1 */
} la_assessment_row;

/* One scored assessment, read out of a la_result with la_result_get. */
typedef struct la_scored_assessment {
    const char *id;        /* BORROWED FROM THE RESULT: valid until la_result_free; */
    size_t id_len;         /*   id_len bytes of UTF-8, not NUL-terminated */
    double scaled_score;   /* 100 .. 900 */
    double percentile;     /* 1 .. 99 */
    int32_t band;          /* a la_band value */
    int32_t has_wcpm;      /* 1 for fluency assessments, else 0 */
    double wcpm;           /* words correct per minute when has_wcpm, else 0 */
    double accuracy;       /* items_correct / items_attempted, 0 .. 1 */
    uint32_t flags;        /* LA_FLAG_* bits */
} la_scored_assessment;

/* Process-wide handle accounting, for tests and metrics. */
typedef struct la_stats {
    uint64_t engines_opened;
    uint64_t engines_closed;
    uint64_t results_opened;
    uint64_t results_closed;
    uint64_t score_calls;
    /* Releases of unknown or already-released handles (each also returned
       LA_ERR_UNKNOWN_HANDLE). Zero in a correct caller. */
    uint64_t violations;
} la_stats;

typedef struct la_engine la_engine; /* opaque */
typedef struct la_result la_result; /* opaque */

/* The ABI version the library was built for; callers refuse any other. No ownership. */
LA_API uint32_t la_abi_version(void);

/* Opens an engine. `config` BORROWED (NUL-terminated, "key=value;..." pairs).
   On LA_OK, *out_engine is OWNED BY THE CALLER: release with la_engine_close once. */
LA_API la_status la_engine_open(const char *config, la_engine **out_engine);

/* Releases an engine. Takes ownership of `engine` whatever the status: after the
   call the pointer is dead. Returns LA_ERR_UNKNOWN_HANDLE (and frees nothing)
   for an engine that is not open. */
LA_API la_status la_engine_close(la_engine *engine);

/* Scores `row_count` rows (0 .. 10000) for one student. `engine`, `context` and
   `rows` (and every row's id) are BORROWED for the call. On LA_OK, *out_result is
   OWNED BY THE CALLER: one result per call, release with la_result_free once.
   The result holds one scored assessment per row, in row order. */
LA_API la_status la_score(la_engine *engine, const la_student_context *context,
                   const la_assessment_row *rows, size_t row_count, la_result **out_result);

/* The number of scored assessments in `result` (BORROWED). */
LA_API size_t la_result_count(const la_result *result);

/* Copies the scalars of entry `index` into *out (caller-owned storage); out->id
   points INTO `result` and is valid until la_result_free(result). */
LA_API la_status la_result_get(const la_result *result, size_t index, la_scored_assessment *out);

/* Releases a result. Takes ownership of `result`; LA_ERR_UNKNOWN_HANDLE (nothing
   freed) for a result that is not live. */
LA_API la_status la_result_free(la_result *result);

/* Copies this thread's last error message into `buf` (caller-owned, `buf_len`
   bytes), truncated and always NUL-terminated when buf_len > 0. Returns the full
   length of the message (excluding the NUL), so a caller can tell it was cut. */
LA_API size_t la_last_error_message(char *buf, size_t buf_len);

/* Copies the process-wide handle counters into *out (caller-owned). */
LA_API la_status la_stats_get(la_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* LEGACY_ASSESSMENT_H */

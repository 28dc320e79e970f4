// scoring.hpp: the documented scoring model and the input checks of
// legacy_assessment.h, shared by the C++ mock (legacy_shim.cpp) and the
// unmanaged core of the .NET component (../dotnet/core/assessment_core.cpp),
// so that both implementations answer the same calls with the same results
// and the same messages.
//
// Scoring model (documented for test authors; the production component's own
// model differs but has the same shape):
//   measure    = fluency: words correct per minute = items_correct * 60 / duration_seconds
//                otherwise: percent correct         = 100 * items_correct / items_attempted
//   z          = (measure - EXPECTED[type][grade]) / SPREAD[type][grade]
//   percentile = clamp(round(50 + 34 z), 1, 99)
//   scaled     = clamp(round(400 + 100 z), 100, 900)
//   band       = percentile <10 WELL_BELOW, <25 BELOW, <75 AT, else ABOVE
//   flags      = LOW_ACCURACY if accuracy < 0.9
//                RAPID_GUESSING if not fluency and duration_seconds < 2 * items_attempted
//                BELOW_READING_LEVEL if reading_level < grade - 1
#ifndef LA_SCORING_HPP
#define LA_SCORING_HPP

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "legacy_assessment.h"

namespace la_scoring {

constexpr int kMaxGrade = 12;
constexpr size_t kMaxRows = 10000;
constexpr size_t kMaxIdLen = 64;

// Oral reading fluency: expected words correct per minute by grade (K..12).
constexpr double kFluencyExpected[kMaxGrade + 1] = {20,  50,  90,  110, 125, 140, 150,
                                                    150, 155, 160, 160, 160, 160};
constexpr double kFluencySpreadK = 10;
constexpr double kFluencySpread = 25;
// Comprehension and phonological awareness: expected percent correct, any grade.
constexpr double kComprehensionExpected = 70, kComprehensionSpread = 15;
constexpr double kPhonologicalExpected = 80, kPhonologicalSpread = 10;

// A message into the caller's buffer (`cap` bytes, NUL-terminated), and `status`.
inline la_status report(char *msg, size_t cap, la_status status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
inline la_status report(char *msg, size_t cap, la_status status, const char *fmt, ...) {
    if (msg && cap > 0) {
        va_list args;
        va_start(args, fmt);
        std::vsnprintf(msg, cap, fmt, args);
        va_end(args);
    }
    return status;
}

inline la_status check_context(const la_student_context &context, char *msg, size_t cap) {
    if (context.grade < 0 || context.grade > kMaxGrade)
        return report(msg, cap, LA_ERR_INVALID_ARGUMENT, "context.grade %d must be within 0..%d",
                      context.grade, kMaxGrade);
    if (!std::isfinite(context.reading_level) || context.reading_level < 0 ||
        context.reading_level > 13)
        return report(msg, cap, LA_ERR_INVALID_ARGUMENT,
                      "context.reading_level must be within 0..13");
    return LA_OK;
}

inline la_status check_row(const la_assessment_row &row, size_t i, char *msg, size_t cap) {
    if (!row.id) return report(msg, cap, LA_ERR_INVALID_ARGUMENT, "rows[%zu].id is NULL", i);
    size_t len = strnlen(row.id, kMaxIdLen + 1);
    if (len == 0 || len > kMaxIdLen)
        return report(msg, cap, LA_ERR_INVALID_ARGUMENT, "rows[%zu].id must be 1..%zu bytes", i,
                      kMaxIdLen);
    if (row.assessment_type < LA_TYPE_ORAL_READING_FLUENCY ||
        row.assessment_type > LA_TYPE_PHONOLOGICAL_AWARENESS)
        return report(msg, cap, LA_ERR_INVALID_ARGUMENT, "rows[%zu].assessment_type %d is unknown",
                      i, row.assessment_type);
    if (!std::isfinite(row.raw_score) || row.raw_score < 0)
        return report(msg, cap, LA_ERR_INVALID_ARGUMENT,
                      "rows[%zu].raw_score must be finite and >= 0", i);
    if (row.items_attempted < 1)
        return report(msg, cap, LA_ERR_INVALID_ARGUMENT, "rows[%zu].items_attempted %d must be >= 1",
                      i, row.items_attempted);
    if (row.items_correct < 0 || row.items_correct > row.items_attempted)
        return report(msg, cap, LA_ERR_INVALID_ARGUMENT,
                      "rows[%zu].items_correct %d must be within 0..items_attempted (%d)", i,
                      row.items_correct, row.items_attempted);
    if (row.duration_seconds < 1)
        return report(msg, cap, LA_ERR_INVALID_ARGUMENT,
                      "rows[%zu].duration_seconds %d must be >= 1", i, row.duration_seconds);
    return LA_OK;
}

inline double clamp(double v, double lo, double hi) { return v < lo ? lo : (v > hi ? hi : v); }

// The scalars of one checked row (id and id_len left zero).
inline la_scored_assessment score_row(const la_student_context &ctx, const la_assessment_row &row) {
    la_scored_assessment out{};
    const double attempted = row.items_attempted, correct = row.items_correct;
    out.accuracy = correct / attempted;
    double measure, expected, spread;
    switch (row.assessment_type) {
        case LA_TYPE_ORAL_READING_FLUENCY:
            measure = correct * 60.0 / row.duration_seconds;
            expected = kFluencyExpected[ctx.grade];
            spread = ctx.grade == 0 ? kFluencySpreadK : kFluencySpread;
            out.has_wcpm = 1;
            out.wcpm = measure;
            break;
        case LA_TYPE_READING_COMPREHENSION:
            measure = 100.0 * out.accuracy;
            expected = kComprehensionExpected;
            spread = kComprehensionSpread;
            break;
        default:
            measure = 100.0 * out.accuracy;
            expected = kPhonologicalExpected;
            spread = kPhonologicalSpread;
            break;
    }
    const double z = (measure - expected) / spread;
    out.percentile = clamp(std::round(50.0 + 34.0 * z), 1, 99);
    out.scaled_score = clamp(std::round(400.0 + 100.0 * z), 100, 900);
    out.band = out.percentile < 10   ? LA_BAND_WELL_BELOW
               : out.percentile < 25 ? LA_BAND_BELOW
               : out.percentile < 75 ? LA_BAND_AT
                                     : LA_BAND_ABOVE;
    if (out.accuracy < 0.9) out.flags |= LA_FLAG_LOW_ACCURACY;
    if (row.assessment_type != LA_TYPE_ORAL_READING_FLUENCY &&
        row.duration_seconds < 2 * row.items_attempted)
        out.flags |= LA_FLAG_RAPID_GUESSING;
    if (ctx.reading_level < ctx.grade - 1) out.flags |= LA_FLAG_BELOW_READING_LEVEL;
    return out;
}

}  // namespace la_scoring

#endif

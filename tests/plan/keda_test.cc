// KEDA's ScaledObject replay and the cron library under it, against cases derived by hand from
// the sources (KEDA v2.15.1, robfig/cron v3.0.1, Go's time package); each case says how.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tideserve/plan/cron.h"
#include "tideserve/plan/hpa.h"
#include "tideserve/plan/keda.h"

namespace tideserve::plan {
namespace {

constexpr int64_t kHour = 3600;
constexpr int64_t kDay = 86400;
// 2024-06-03T00:00:00Z, a Monday: 08:00 in Asia/Shanghai (UTC+8, no DST since 1991).
constexpr int64_t kJune3 = 1717372800;

uint64_t bits(std::initializer_list<int> values) {
  uint64_t b = 0;
  for (int v : values) b |= uint64_t{1} << v;
  return b;
}
uint64_t range_bits(int lo, int hi) {
  uint64_t b = 0;
  for (int v = lo; v <= hi; ++v) b |= uint64_t{1} << v;
  return b;
}

CronSchedule must_parse(const std::string& spec) {
  Result<CronSchedule> s = CronSchedule::parse(spec);
  EXPECT_TRUE(s.is_ok()) << spec << ": " << s.status().to_string();
  return std::move(s.value());
}

TimeZone must_load(const std::string& name) {
  Result<TimeZone> tz = TimeZone::load(name);
  EXPECT_TRUE(tz.is_ok()) << name << ": " << tz.status().to_string();
  return tz.is_ok() ? *tz : TimeZone::utc();
}

// ---------------------------------------------------------------------------------------------
// Parsing (robfig parser.go getField/getRange)

TEST(CronParse, FieldsListsRangesStepsNames) {
  // "30 8 * * *": seconds fixed at 0; * sets every value plus the star bit.
  CronSchedule a = must_parse("30 8 * * *");
  EXPECT_EQ(a.second_bits(), bits({0}));
  EXPECT_EQ(a.minute_bits(), bits({30}));
  EXPECT_EQ(a.hour_bits(), bits({8}));
  EXPECT_EQ(a.dom_bits(), range_bits(1, 31) | CronSchedule::kStarBit);
  EXPECT_EQ(a.month_bits(), range_bits(1, 12) | CronSchedule::kStarBit);
  EXPECT_EQ(a.dow_bits(), range_bits(0, 6) | CronSchedule::kStarBit);

  // Steps over *, lists of names (case-insensitive), a weekday range by name.
  CronSchedule b = must_parse("*/15 9-17 * JAN,jul MON-FRI");
  EXPECT_EQ(b.minute_bits(), bits({0, 15, 30, 45}));  // "*/15": step > 1 drops the star bit
  EXPECT_EQ(b.hour_bits(), range_bits(9, 17));
  EXPECT_EQ(b.month_bits(), bits({1, 7}));
  EXPECT_EQ(b.dow_bits(), range_bits(1, 5));

  // "N/step" means N-max/step; "a-b/step"; "*/1" keeps the star bit; "?" is "*".
  EXPECT_EQ(must_parse("5/20 * * * *").minute_bits(), bits({5, 25, 45}));
  EXPECT_EQ(must_parse("10-30/10 * * * *").minute_bits(), bits({10, 20, 30}));
  EXPECT_EQ(must_parse("*/1 * * * *").minute_bits(), range_bits(0, 59) | CronSchedule::kStarBit);
  EXPECT_EQ(must_parse("0 0 ? * *").dom_bits(), range_bits(1, 31) | CronSchedule::kStarBit);
  // Extra whitespace between fields is fine (strings.Fields).
  EXPECT_EQ(must_parse("  0   12 1,15 * sun ").dom_bits(), bits({1, 15}));
}

TEST(CronParse, Rejects) {
  for (const char* spec : {
           "",               // empty spec string
           "* * * *",        // 4 fields
           "* * * * * *",    // 6: no seconds field in KEDA's parser
           "60 * * * *",     // minute above 59
           "* 24 * * *",     // hour above 23
           "* * 0 * *",      // day of month below 1
           "* * * 13 *",     // month above 12
           "* * * * 7",      // day of week is 0..6 in robfig (no 7 for Sunday)
           "5-1 * * * *",    // start beyond end
           "*/0 * * * *",    // zero step
           "1-2-3 * * * *",  // too many hyphens
           "1/2/3 * * * *",  // too many slashes
           "a * * * *",      // not a number
           "-1 * * * *",     // ["", "1"]: "" is not a number
           "@daily",         // descriptors: not accepted by KEDA's parser
           "TZ=UTC 0 0 * * *",
       }) {
    EXPECT_FALSE(CronSchedule::parse(spec).is_ok()) << spec;
  }
}

// ---------------------------------------------------------------------------------------------
// Time zones (Go's time.LoadLocation, Location.lookup, time.Date)

TEST(TimeZone, UtcAndMissingNames) {
  for (const char* name : {"", "UTC", "Etc/UTC"}) {
    TimeZone tz = must_load(name);
    EXPECT_EQ(tz.utc_offset(kJune3), 0) << name;
    EXPECT_EQ(tz.local_to_utc(kJune3), kJune3) << name;
  }
  EXPECT_EQ(TimeZone::load("Mars/Olympus_Mons").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(TimeZone::load("../etc/passwd").status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(TimeZone::from_tzif("x", "TZif2 but not really").is_ok());
}

TEST(TimeZone, CivilFields) {
  // 2024-06-03T00:00:00Z is Monday (weekday 1); 2024-02-29 exists; normalization of Feb 30 into
  // March 1 as time.Date does.
  CivilTime c = civil_from_local_seconds(kJune3 + 8 * kHour + 30 * 60 + 5);
  EXPECT_EQ(c.year, 2024);
  EXPECT_EQ(c.month, 6);
  EXPECT_EQ(c.day, 3);
  EXPECT_EQ(c.hour, 8);
  EXPECT_EQ(c.minute, 30);
  EXPECT_EQ(c.second, 5);
  EXPECT_EQ(c.weekday, 1);
  EXPECT_EQ(local_seconds_from_civil(2024, 2, 30, 0, 0, 0),
            local_seconds_from_civil(2024, 3, 1, 0, 0, 0));
  EXPECT_EQ(local_seconds_from_civil(2024, 13, 1, 0, 0, 0),
            local_seconds_from_civil(2025, 1, 1, 0, 0, 0));
  EXPECT_EQ(local_seconds_from_civil(1970, 1, 1, 0, 0, 0), 0);
  EXPECT_EQ(civil_from_local_seconds(-1).year, 1969);
  EXPECT_EQ(civil_from_local_seconds(-1).weekday, 3);  // 1969-12-31 was a Wednesday
}

TEST(TimeZone, Shanghai) {
  TimeZone tz = must_load("Asia/Shanghai");
  EXPECT_EQ(tz.utc_offset(kJune3), 8 * kHour);
  EXPECT_EQ(tz.utc_offset(kJune3 + 180 * kDay), 8 * kHour);  // no DST
  EXPECT_EQ(tz.civil(kJune3).hour, 8);
  // 2024-06-03 08:30 local = 00:30Z.
  EXPECT_EQ(tz.date(2024, 6, 3, 8, 30, 0), kJune3 + 1800);
}

TEST(TimeZone, NewYorkAroundDst) {
  TimeZone tz = must_load("America/New_York");
  // Spring forward 2024-03-10: 02:00 EST (07:00Z) becomes 03:00 EDT.
  constexpr int64_t kSpring = 1710054000;  // 2024-03-10T07:00:00Z
  EXPECT_EQ(tz.utc_offset(kSpring - 1), -5 * kHour);
  EXPECT_EQ(tz.utc_offset(kSpring), -4 * kHour);
  // time.Date(2024, 3, 10, 2, 30): read as UTC, 02:30Z is EST (-5 h) whose range ends at 07:00Z;
  // 02:30 + 5 h = 07:30Z lies past it, so the offset at 07:30Z (EDT, -4 h) is used:
  // 02:30 + 4 h = 06:30Z, i.e. 01:30 EST, an hour before the wall time asked for.
  EXPECT_EQ(tz.date(2024, 3, 10, 2, 30, 0), 1710052200);  // 2024-03-10T06:30:00Z
  EXPECT_EQ(tz.date(2024, 3, 10, 3, 0, 0), kSpring);
  // Fall back 2024-11-03: 02:00 EDT (06:00Z) becomes 01:00 EST. 01:30 occurs twice; time.Date
  // gives the first (01:30Z read as UTC is still EDT, and 05:30Z is inside EDT's range).
  EXPECT_EQ(tz.date(2024, 11, 3, 1, 30, 0), 1730611800);  // 2024-11-03T05:30:00Z
  // Past the file's last transition (2037) the footer rule EST5EDT,M3.2.0,M11.1.0 decides:
  // 2040-03-11 (second Sunday of March) 02:00 EST = 07:00Z; 2040-11-04 02:00 EDT = 06:00Z.
  EXPECT_EQ(tz.utc_offset(2215062000 - 1), -5 * kHour);
  EXPECT_EQ(tz.utc_offset(2215062000), -4 * kHour);
  EXPECT_EQ(tz.utc_offset(2235621600 - 1), -4 * kHour);
  EXPECT_EQ(tz.utc_offset(2235621600), -5 * kHour);
  EXPECT_TRUE(tz.lookup(2215062000).is_dst);
  EXPECT_EQ(tz.lookup(2215062000).abbreviation, "EDT");
}

// ---------------------------------------------------------------------------------------------
// SpecSchedule.Next

TEST(CronNext, UtcAndShanghai) {
  TimeZone utc = TimeZone::utc();
  CronSchedule s = must_parse("30 8 * * *");
  constexpr int64_t kJan1 = 1704067200;  // 2024-01-01T00:00:00Z
  EXPECT_EQ(s.next(kJan1, utc), kJan1 + 8 * kHour + 1800);
  // Strictly after: from 08:30:00 itself the next is tomorrow's.
  EXPECT_EQ(s.next(kJan1 + 8 * kHour + 1800, utc), kJan1 + kDay + 8 * kHour + 1800);
  EXPECT_EQ(s.next(kJan1 + 8 * kHour + 1799, utc), kJan1 + 8 * kHour + 1800);
  // In Shanghai 08:30 local is 00:30Z; from 08:00 local (kJune3) that is 30 minutes later.
  TimeZone sh = must_load("Asia/Shanghai");
  EXPECT_EQ(s.next(kJune3, sh), kJune3 + 1800);
  // 21:30 local = 13:30Z.
  EXPECT_EQ(must_parse("30 21 * * *").next(kJune3, sh), kJune3 + 13 * kHour + 1800);
  // Every 15 minutes: from 08:07:13 local the next is 08:15:00 local.
  EXPECT_EQ(must_parse("*/15 * * * *").next(kJune3 + 7 * 60 + 13, sh), kJune3 + 15 * 60);
  // Month rollover: "0 0 1 * *" from 2024-06-03 local is 2024-07-01 00:00 local = 06-30 16:00Z.
  EXPECT_EQ(must_parse("0 0 1 * *").next(kJune3, sh), kJune3 + 27 * kDay + 16 * kHour);
  // A day that never comes (Feb 30): Go returns the zero Time after five years; here nothing.
  EXPECT_FALSE(must_parse("0 0 30 2 *").next(kJune3, utc).has_value());
}

TEST(CronNext, DayOfMonthOrDayOfWeek) {
  TimeZone utc = TimeZone::utc();
  constexpr int64_t kSep1 = 1725148800;  // 2024-09-01T00:00:00Z, a Sunday
  // Both restricted: the 13th OR a Friday. Fridays in Sept 2024: 6, 13, 20, 27.
  CronSchedule either = must_parse("0 0 13 * FRI");
  EXPECT_EQ(either.next(kSep1, utc), kSep1 + 5 * kDay);               // Fri 6th
  EXPECT_EQ(either.next(kSep1 + 5 * kDay, utc), kSep1 + 12 * kDay);   // 13th (a Friday)
  EXPECT_EQ(either.next(kSep1 + 12 * kDay, utc), kSep1 + 19 * kDay);  // Fri 20th
  // Day of week "*": only the 13th; October 13th follows September's.
  EXPECT_EQ(must_parse("0 0 13 * *").next(kSep1 + 12 * kDay, utc), kSep1 + 42 * kDay);
  // Day of month "*": Mondays only (AND with the all-days field).
  CronSchedule mondays = must_parse("0 0 * * MON");
  EXPECT_EQ(mondays.next(kSep1, utc), kSep1 + kDay);
  EXPECT_EQ(mondays.next(kSep1 + kDay, utc), kSep1 + 8 * kDay);
  // robfig quirk: "*/2" is not a star (step > 1), so "*/2 ... MON" means odd days OR Mondays.
  CronSchedule quirk = must_parse("0 0 */2 * MON");
  EXPECT_EQ(quirk.next(kSep1, utc), kSep1 + kDay);             // Mon 2nd
  EXPECT_EQ(quirk.next(kSep1 + kDay, utc), kSep1 + 2 * kDay);  // 3rd (odd)
}

TEST(CronNext, NewYorkSpringForwardAndFallBack) {
  TimeZone ny = must_load("America/New_York");
  // "30 2 * * *" from 2024-03-09 12:00 EST (17:00Z). Next walks hours by elapsed time: 12:00,
  // ..., 23:00, then 00:00 on the 10th wraps; hour 2 is looked for from 00:00: +1 h = 01:00
  // EST, +1 h = 03:00 EDT (07:00Z): 02:00 never appears that day; on through 23:00 EDT to
  // 00:00 of the 11th, then 02:00 EDT and minute 30: 2024-03-11 02:30 EDT = 06:30Z. The job of
  // the skipped day is skipped, not moved.
  CronSchedule at_230 = must_parse("30 2 * * *");
  EXPECT_EQ(at_230.next(1710003600, ny), 1710138600);
  // "0 3 * * *" on the 10th: 03:00 EDT = 07:00Z, right at the transition.
  EXPECT_EQ(must_parse("0 3 * * *").next(1710046800, ny), 1710054000);  // from 00:00 EST
  // Fall back: "30 1 * * *" fires at 01:30 EDT (05:30Z) and again at 01:30 EST (06:30Z): from
  // 01:30:01 EDT the minute search runs to 01:59 then +1 min = 01:00 EST, minute 0 wraps, and
  // hour 1 still matches, so 01:30 EST is next.
  CronSchedule at_130 = must_parse("30 1 * * *");
  EXPECT_EQ(at_130.next(1730548800, ny), 1730611800);  // from 2024-11-02T12:00Z
  EXPECT_EQ(at_130.next(1730611800, ny), 1730615400);
  EXPECT_EQ(at_130.next(1730615400, ny), 1730615400 + kDay);  // then 11-04 01:30 EST
}

TEST(CronNext, ZoneSkippingAWholeDay) {
  // Samoa skipped 2011-12-30. Looking for Dec 31 23:59 from September 2011, the day loop steps
  // from Dec 29 to time.Date(2011, 12, 30, 0, 0, 0): read as UTC that is -10 h, whose range ends
  // at the transition, so the +14 h offset is used and the instant is Dec 29 00:00 again. robfig
  // loops forever there (checked against Go); next() gives up and says so.
  TimeZone apia = must_load("Pacific/Apia");
  bool stuck = false;
  EXPECT_FALSE(must_parse("59 23 31 12 *").next(1316905040, apia, &stuck).has_value());
  EXPECT_TRUE(stuck);
  // Feb 30 is merely never: no next time, not stuck.
  EXPECT_FALSE(must_parse("0 0 30 2 *").next(1316905040, apia, &stuck).has_value());
  EXPECT_FALSE(stuck);
  // As a cron trigger: the scaler fails (KEDA's would hang) instead of the replay hanging.
  Trigger t;
  t.type = "cron";
  t.timezone = "Pacific/Apia";
  t.start = "0 8 * * *";
  t.end = "59 23 31 12 *";
  t.desired_replicas = 2;
  EXPECT_EQ(cron_trigger_value(t, 1316905040).status().code(), StatusCode::kUnavailable);
}

// ---------------------------------------------------------------------------------------------
// The cron trigger's window (cron_scaler.go GetMetricsAndActivity)

Trigger repo_cron() {
  Trigger t;
  t.type = "cron";
  t.timezone = "Asia/Shanghai";
  t.start = "30 8 * * *";
  t.end = "30 21 * * *";
  t.desired_replicas = 6;
  return t;
}

void expect_window(const Trigger& t, double now, bool active, double value) {
  Result<TriggerValue> v = cron_trigger_value(t, now);
  ASSERT_TRUE(v.is_ok()) << v.status().to_string();
  EXPECT_EQ(v->active, active) << "at " << now;
  EXPECT_EQ(v->value, value) << "at " << now;
}

TEST(CronTrigger, RepoWindowInShanghai) {
  const Trigger t = repo_cron();
  // kJune3 is 08:00 local. Outside the window the metric is 1 (defaultDesiredReplicas), not 0.
  // 08:29:59: next start = today 08:30 < next end = today 21:30 and now < next start: inactive.
  expect_window(t, kJune3 + 1799, false, 1);
  // 08:30:00 sharp: the next start is strictly after now, so tomorrow's 08:30, later than
  // today's 21:30 end; now <= next end: active, desiredReplicas. (Also with a fraction.)
  expect_window(t, kJune3 + 1800, true, 6);
  expect_window(t, kJune3 + 1800.5, true, 6);
  // 21:29:59: still inside.
  expect_window(t, kJune3 + 13 * kHour + 1799, true, 6);
  // 21:30:00 sharp: next end is tomorrow's 21:30, next start tomorrow's 08:30 (earlier), now
  // before it: inactive. The window is [08:30, 21:30).
  expect_window(t, kJune3 + 13 * kHour + 1800, false, 1);
  // Local midnight (16:00Z): inactive.
  expect_window(t, kJune3 + 16 * kHour, false, 1);
}

TEST(CronTrigger, WindowCrossingMidnight) {
  Trigger t;
  t.type = "cron";
  t.timezone = "UTC";
  t.start = "0 22 * * *";
  t.end = "0 6 * * *";
  t.desired_replicas = 3;
  // 23:00: next start tomorrow 22:00 is after next end tomorrow 06:00: active.
  expect_window(t, kJune3 + 23 * kHour, true, 3);
  // 03:00: next start today 22:00 after next end today 06:00: active.
  expect_window(t, kJune3 + 3 * kHour, true, 3);
  // 06:00 sharp: next end tomorrow 06:00, next start today 22:00 earlier: inactive.
  expect_window(t, kJune3 + 6 * kHour, false, 1);
  expect_window(t, kJune3 + 12 * kHour, false, 1);
  expect_window(t, kJune3 + 22 * kHour, true, 3);
}

TEST(CronTrigger, InvalidMetadata) {
  Trigger t = repo_cron();
  t.end = t.start;  // start and end can not be the same
  EXPECT_FALSE(cron_trigger_value(t, kJune3).is_ok());
  t = repo_cron();
  t.timezone = "";
  EXPECT_FALSE(cron_trigger_value(t, kJune3).is_ok());
  t = repo_cron();
  t.start = "30 8 * *";
  EXPECT_FALSE(cron_trigger_value(t, kJune3).is_ok());
  t = repo_cron();
  t.timezone = "Asia/Atlantis";
  EXPECT_FALSE(cron_trigger_value(t, kJune3).is_ok());
}

// ---------------------------------------------------------------------------------------------
// The HPA KEDA creates (controllers/keda/hpa.go)

Behavior repo_behavior() {
  Behavior b;
  b.scale_up.stabilization_window_seconds = 0;
  b.scale_up.select_policy = SelectPolicy::kMax;
  b.scale_up.policies = {{PolicyType::kPercent, 100, 15}, {PolicyType::kPods, 4, 15}};
  b.scale_down.stabilization_window_seconds = 300;
  b.scale_down.select_policy = SelectPolicy::kMin;
  b.scale_down.policies = {{PolicyType::kPercent, 20, 60}};
  return b;
}

// deploy/k8s/overlays/keda/scaledobject.yaml, as the manifest reader would fill it in.
ScaledObjectSpec repo_scaled_object() {
  ScaledObjectSpec so;
  so.name = "tideserve";
  so.target_kind = "Deployment";
  so.target_name = "tideserve";
  so.min_replica_count = 2;
  so.max_replica_count = 10;
  so.polling_interval_s = 15;
  so.cooldown_period_s = 300;
  so.hpa_name = "keda-hpa-tideserve";
  so.behavior = repo_behavior();
  Trigger cpu;
  cpu.type = "cpu";
  cpu.metric_type = TargetType::kUtilization;
  cpu.target = 70;
  Trigger mem = cpu;
  mem.type = "memory";
  mem.target = 80;
  Trigger prom;
  prom.type = "prometheus";
  prom.metric_type = TargetType::kAverageValue;
  prom.target = 0.25;
  so.triggers = {cpu, mem, prom, repo_cron()};
  return so;
}

TEST(KedaHpa, RepoScaledObject) {
  const HpaSpec hpa = keda_hpa_spec(repo_scaled_object());
  EXPECT_EQ(hpa.name, "keda-hpa-tideserve");
  EXPECT_EQ(hpa.target_kind, "Deployment");
  EXPECT_EQ(hpa.target_name, "tideserve");
  EXPECT_EQ(hpa.min_replicas, 2);  // GetHPAMinReplicas: minReplicaCount > 0
  EXPECT_EQ(hpa.max_replicas, 10);
  ASSERT_TRUE(hpa.behavior.has_value());
  EXPECT_EQ(hpa.behavior->scale_down.stabilization_window_seconds, 300);
  EXPECT_EQ(hpa.behavior->scale_down.policies.size(), 1u);
  ASSERT_EQ(hpa.metrics.size(), 4u);
  // cpu/memory: Resource metrics with averageUtilization.
  EXPECT_EQ(hpa.metrics[0].type, MetricSourceType::kResource);
  EXPECT_EQ(hpa.metrics[0].name, "cpu");
  EXPECT_EQ(hpa.metrics[0].target_type, TargetType::kUtilization);
  EXPECT_EQ(hpa.metrics[0].target_utilization, 70);
  EXPECT_EQ(hpa.metrics[1].name, "memory");
  EXPECT_EQ(hpa.metrics[1].target_utilization, 80);
  // prometheus: External "s2-prometheus", GetMetricTargetMili(AverageValue, 0.25) = 250m.
  EXPECT_EQ(hpa.metrics[2].type, MetricSourceType::kExternal);
  EXPECT_EQ(hpa.metrics[2].name, "s2-prometheus");
  EXPECT_EQ(hpa.metrics[2].target_type, TargetType::kAverageValue);
  EXPECT_EQ(hpa.metrics[2].target_milli, 250);
  // cron: the name from parseCronTimeFormat + NormalizeString; the target is always 1.
  EXPECT_EQ(hpa.metrics[3].type, MetricSourceType::kExternal);
  EXPECT_EQ(hpa.metrics[3].name, "s3-cron-Asia-Shanghai-308xxx-3021xxx");
  EXPECT_EQ(hpa.metrics[3].target_type, TargetType::kAverageValue);
  EXPECT_EQ(hpa.metrics[3].target_milli, 1000);
}

TEST(KedaHpa, DefaultsAndMinZero) {
  ScaledObjectSpec so;
  so.name = "worker";
  so.target_name = "worker";
  Trigger q;
  q.type = "redis-streams";
  q.target = 100;
  q.activation_target = 1;
  q.metadata = {{"stream", "jobs"}, {"consumerGroup", "g"}, {"lagCount", "100"}};
  so.triggers = {q};
  const HpaSpec hpa = keda_hpa_spec(so);
  EXPECT_EQ(hpa.name, "keda-hpa-worker");
  EXPECT_EQ(hpa.target_kind, "Deployment");
  EXPECT_EQ(hpa.min_replicas, 1);  // minReplicaCount 0: the HPA gets 1
  EXPECT_EQ(hpa.max_replicas, 100);
  EXPECT_FALSE(hpa.behavior.has_value());
  ASSERT_EQ(hpa.metrics.size(), 1u);
  EXPECT_EQ(hpa.metrics[0].name, "s0-redis-streams-jobs");
  EXPECT_EQ(hpa.metrics[0].target_type, TargetType::kAverageValue);
  EXPECT_EQ(hpa.metrics[0].target_milli, 100000);
}

// ---------------------------------------------------------------------------------------------
// The operator (scale_handler.go getScaledObjectState, executor RequestScale)

Trigger prometheus(double threshold, double activation) {
  Trigger t;
  t.type = "prometheus";
  t.target = threshold;
  t.activation_target = activation;
  return t;
}

KedaOperator must_create(ScaledObjectSpec so) {
  Result<KedaOperator> op = KedaOperator::create(std::move(so));
  EXPECT_TRUE(op.is_ok()) << op.status().to_string();
  return std::move(op.value());
}

ScaledObjectSpec zero_to_n() {
  ScaledObjectSpec so;
  so.name = "worker";
  so.target_name = "worker";
  so.min_replica_count = 0;
  so.max_replica_count = 10;
  so.cooldown_period_s = 300;
  so.triggers = {prometheus(10, 5)};
  return so;
}

TEST(KedaOperator, ActivationFromZeroIsStrict) {
  KedaOperator op = must_create(zero_to_n());
  // value 5 with activationThreshold 5: 5 > 5 is false, nothing to do at 0 replicas.
  EXPECT_EQ(op.poll(0, 0, {5.0}), std::nullopt);
  // 5.001 > 5: active at 0 replicas -> scaleFromZeroOrIdle to max(minReplicaCount, 1) = 1.
  EXPECT_EQ(op.poll(30, 0, {5.001}), 1);
  // Above zero the operator leaves the count to the HPA.
  EXPECT_EQ(op.poll(60, 1, {50.0}), std::nullopt);
}

TEST(KedaOperator, CooldownBoundaryBackToZero) {
  KedaOperator op = must_create(zero_to_n());
  EXPECT_EQ(op.poll(0, 0, {6.0}), 1);
  // Last active at 60.7: stored as a metav1.Time, i.e. 60 (whole seconds).
  EXPECT_EQ(op.poll(60.7, 3, {6.0}), std::nullopt);
  // Inactive: scale to zero only when lastActiveTime + cooldownPeriod is before now.
  EXPECT_EQ(op.poll(90, 3, {0.0}), std::nullopt);
  EXPECT_EQ(op.poll(360, 3, {0.0}), std::nullopt);  // 60 + 300 == 360: not yet
  EXPECT_EQ(op.poll(360.2, 3, {0.0}), 0);           // 360 < 360.2: to minReplicaCount 0
  // At zero and still inactive: nothing more.
  EXPECT_EQ(op.poll(390, 0, {0.0}), std::nullopt);
}

TEST(KedaOperator, NeverActiveGoesToZeroAtOnce) {
  // lastActiveTime nil and creation + initialCooldownPeriod (0) long past: no cooldown at all.
  KedaOperator op = must_create(zero_to_n());
  EXPECT_EQ(op.poll(0, 4, {0.0}), 0);
  // With initialCooldownPeriod 120 and creation at 0: only after 120 s.
  ScaledObjectSpec so = zero_to_n();
  so.initial_cooldown_period_s = 120;
  so.created_s = 0;
  KedaOperator op2 = must_create(so);
  EXPECT_EQ(op2.poll(120, 4, {0.0}), std::nullopt);
  EXPECT_EQ(op2.poll(121, 4, {0.0}), 0);
}

TEST(KedaOperator, MinReplicaCountAboveZeroNeverGoesToZero) {
  ScaledObjectSpec so = zero_to_n();
  so.min_replica_count = 2;
  KedaOperator op = must_create(so);
  // Inactive for an hour at 2: no case of RequestScale applies (min != 0, no idle).
  for (int t = 0; t <= 3600; t += 30) EXPECT_EQ(op.poll(t, 2, {0.0}), std::nullopt);
  // Someone set 1: below minReplicaCount without idle mode -> back to 2.
  EXPECT_EQ(op.poll(3630, 1, {0.0}), 2);
  // Active at 0 replicas: scaleFromZeroOrIdle to minReplicaCount.
  EXPECT_EQ(op.poll(3660, 0, {9.0}), 2);
}

TEST(KedaOperator, IdleReplicaCount) {
  ScaledObjectSpec so = zero_to_n();
  so.min_replica_count = 2;
  so.idle_replica_count = 0;
  so.triggers = {prometheus(10, 0)};
  KedaOperator op = must_create(so);
  // Never active, above idle: straight to idleReplicaCount.
  EXPECT_EQ(op.poll(0, 2, {0.0}), 0);
  // Active below minReplicaCount in idle mode: to minReplicaCount (not 1).
  EXPECT_EQ(op.poll(30, 0, {3.0}), 2);
  // Cooldown from lastActiveTime 30: 330 is not before 330, 331 is.
  EXPECT_EQ(op.poll(60, 2, {0.0}), std::nullopt);
  EXPECT_EQ(op.poll(330, 5, {0.0}), std::nullopt);
  EXPECT_EQ(op.poll(331, 5, {0.0}), 0);

  // idle 1, min 3: active at the idle count goes to 3; back to 1 after the cooldown.
  so.idle_replica_count = 1;
  so.min_replica_count = 3;
  KedaOperator op2 = must_create(so);
  EXPECT_EQ(op2.poll(0, 1, {1.0}), 3);
  EXPECT_EQ(op2.poll(301, 3, {0.0}), 1);
  EXPECT_EQ(op2.poll(331, 1, {0.0}), std::nullopt);

  // idleReplicaCount must be below minReplicaCount.
  so.idle_replica_count = 3;
  EXPECT_FALSE(KedaOperator::create(so).is_ok());
}

TEST(KedaOperator, ScalerErrors) {
  // All scalers failing (no fallback): inactive with an error -> replicas left as they are,
  // however long it lasts.
  KedaOperator op = must_create(zero_to_n());
  for (int t = 0; t <= 1200; t += 30) EXPECT_EQ(op.poll(t, 3, {std::nullopt}), std::nullopt);

  // Active with one trigger failing: lastActiveTime is not refreshed, so the cooldown counts
  // from the last error-free active poll (0), and zero comes at 301 even though a trigger was
  // active at 200.
  ScaledObjectSpec so = zero_to_n();
  so.triggers = {prometheus(10, 0), prometheus(10, 0)};
  so.triggers[1].type = "redis-streams";
  KedaOperator op2 = must_create(so);
  EXPECT_EQ(op2.poll(0, 2, {1.0, 1.0}), std::nullopt);
  EXPECT_EQ(op2.poll(200, 2, {1.0, std::nullopt}), std::nullopt);
  EXPECT_EQ(op2.poll(300, 2, {0.0, 0.0}), std::nullopt);
  EXPECT_EQ(op2.poll(301, 2, {0.0, 0.0}), 0);
}

TEST(KedaOperator, CpuMemoryTriggersDoNotActivate) {
  // cpu + prometheus with minReplicaCount 0: only prometheus decides activity; the cpu value
  // (whatever is passed) is ignored.
  ScaledObjectSpec so = zero_to_n();
  Trigger cpu;
  cpu.type = "cpu";
  cpu.metric_type = TargetType::kUtilization;
  cpu.target = 50;
  so.triggers = {cpu, prometheus(10, 0)};
  KedaOperator op = must_create(so);
  EXPECT_EQ(op.poll(0, 2, {1000.0, 0.0}), 0);
  // Only cpu/memory triggers: always active (and minReplicaCount 0 is rejected).
  so.triggers = {cpu};
  EXPECT_FALSE(KedaOperator::create(so).is_ok());
  so.min_replica_count = 1;
  KedaOperator op2 = must_create(so);
  EXPECT_EQ(op2.poll(0, 3, {}), std::nullopt);
  EXPECT_EQ(op2.poll(600, 3, {}), std::nullopt);
  EXPECT_EQ(op2.poll(630, 0, {}), 1);  // active at 0: from zero
}

TEST(KedaOperator, RejectsInvalidSpecs) {
  ScaledObjectSpec so = zero_to_n();
  so.triggers[0].metric_type = TargetType::kUtilization;  // external metrics can't
  EXPECT_FALSE(KedaOperator::create(so).is_ok());
  so = zero_to_n();
  so.min_replica_count = 11;  // above max
  EXPECT_FALSE(KedaOperator::create(so).is_ok());
  so = zero_to_n();
  so.triggers = {};
  EXPECT_FALSE(KedaOperator::create(so).is_ok());
  so = zero_to_n();
  Trigger mem;
  mem.type = "memory";
  mem.metric_type = TargetType::kValue;  // cpu/memory: Utilization or AverageValue only
  so.triggers.push_back(mem);
  EXPECT_FALSE(KedaOperator::create(so).is_ok());
}

TEST(KedaOperator, ExternalMetricsRepoScaledObject) {
  KedaOperator op = must_create(repo_scaled_object());
  // 08:30 in Shanghai: cron 6 -> 6000m; prometheus 0.2504 -> int64(250.4) = 250m (truncated);
  // cpu/memory are not External metrics.
  std::vector<std::optional<int64_t>> m = op.external_metrics(kJune3 + 1800, {0, 0, 0.2504, 0});
  ASSERT_EQ(m.size(), 4u);
  EXPECT_FALSE(m[0].has_value());
  EXPECT_FALSE(m[1].has_value());
  EXPECT_EQ(m[2], 250);
  EXPECT_EQ(m[3], 6000);
  // 21:30: cron back to 1 -> 1000m; a failing prometheus -> absent.
  m = op.external_metrics(kJune3 + 13 * kHour + 1800, {0, 0, std::nullopt, 0});
  EXPECT_FALSE(m[2].has_value());
  EXPECT_EQ(m[3], 1000);
  // minReplicaCount 2, cron active, 2 replicas: nothing for the operator to do.
  EXPECT_EQ(op.poll(kJune3 + 1800, 2, {0, 0, 0.1, 0}), std::nullopt);
}

// ---------------------------------------------------------------------------------------------
// KEDA cron with a queue trigger: the operator and the HPA it creates, together.

TEST(KedaWithHpa, CronWithQueueTrigger) {
  // A worker: cron floor of 6 from 08:30 to 21:30 Shanghai time, plus a redis-streams lag
  // trigger (lagCount 100, activationLagCount 1); minReplicaCount 0, pollingInterval 30,
  // cooldownPeriod 300. The HPA gets min 1, max 20, scale-up 100 pods/15 s (no rate limit in
  // this scenario), scale-down after a 300 s window.
  ScaledObjectSpec so;
  so.name = "worker";
  so.target_name = "worker";
  so.min_replica_count = 0;
  so.max_replica_count = 20;
  so.polling_interval_s = 30;
  so.cooldown_period_s = 300;
  Behavior b;
  b.scale_up.stabilization_window_seconds = 0;
  b.scale_up.policies = {{PolicyType::kPods, 100, 15}};
  b.scale_down.stabilization_window_seconds = 300;
  b.scale_down.policies = {{PolicyType::kPercent, 100, 15}};
  so.behavior = b;
  Trigger cron = repo_cron();
  Trigger lag;
  lag.type = "redis-streams";
  lag.target = 100;
  lag.activation_target = 1;
  lag.metadata = {{"stream", "jobs"}, {"consumerGroup", "workers"}, {"lagCount", "100"}};
  so.triggers = {cron, lag};

  KedaOperator op = must_create(so);
  HpaController hpa(keda_hpa_spec(op.spec()));
  ASSERT_EQ(hpa.spec().min_replicas, 1);

  // The lag (entries) over the day, local Shanghai time from 08:00 (kJune3).
  const auto lag_at = [](int64_t t) -> double {
    const int64_t local = t - kJune3;                                // seconds after 08:00 local
    if (local >= 2 * kHour && local < 3 * kHour) return 1500;        // 10:00-11:00
    if (local >= 15 * kHour && local < 15 * kHour + 600) return 50;  // 23:00-23:10
    if (local >= 18 * kHour && local < 18 * kHour + 600) return 1;   // 02:00-02:10
    return 0;
  };
  std::map<int64_t, int32_t> replicas_at;  // after each step
  int32_t replicas = 0;
  for (int64_t t = kJune3; t <= kJune3 + 19 * kHour; t += 15) {
    const std::vector<std::optional<double>> values = {std::nullopt, lag_at(t)};
    // The operator's loop every pollingInterval (30 s), then the HPA's sync every 15 s.
    if ((t - kJune3) % 30 == 0) {
      if (std::optional<int32_t> set = op.poll(static_cast<double>(t), replicas, values)) {
        replicas = *set;
      }
    }
    SyncInput in;
    in.now_s = static_cast<double>(t);
    in.current_replicas = replicas;
    for (int32_t i = 0; i < replicas; ++i) {
      PodView pod;
      pod.start_s = static_cast<double>(kJune3 - kDay);
      pod.ready_change_s = pod.start_s;
      pod.values.resize(2);
      in.pods.push_back(pod);
    }
    in.external_milli = op.external_metrics(static_cast<double>(t), values);
    replicas = hpa.sync(in).desired;
    replicas_at[t - kJune3] = replicas;
  }
  const auto at = [&](int hh, int mm, int ss = 0) {
    // Local wall time hh:mm:ss on June 3 (hh >= 8) or the night after (hh < 8).
    int64_t local = (hh - 8) * kHour + mm * 60 + ss;
    if (hh < 8) local += kDay;
    return replicas_at.at(local);
  };
  // 08:00-08:29:45: nothing active, 0 replicas; the HPA does nothing at 0 (scaling disabled).
  EXPECT_EQ(at(8, 0), 0);
  EXPECT_EQ(at(8, 29, 45), 0);
  // 08:30:00: cron active -> the operator 0 -> 1; the HPA then sees cron 6000m over a 1000m
  // average target: ceil(6000/1000) = 6 (the lag metric 0 gives 0): 6.
  EXPECT_EQ(at(8, 30), 6);
  EXPECT_EQ(at(9, 59, 45), 6);
  // 10:00: lag 1500 -> 1500000m / (100000m * 6) = 2.5 -> ceil(1500000/100000) = 15.
  EXPECT_EQ(at(10, 0), 15);
  EXPECT_EQ(at(10, 59, 45), 15);
  // 11:00 the lag is gone; the cron floor recommends 6, held back by the 300 s window.
  EXPECT_EQ(at(11, 4), 15);
  EXPECT_EQ(at(11, 6), 6);
  EXPECT_EQ(at(21, 29, 45), 6);
  // 21:30 the window closes (cron metric 1000m -> 1); the HPA's window still holds 6 at 21:33.
  EXPECT_EQ(at(21, 33), 6);
  // lastActiveTime is the 21:29:30 poll; 21:34:30 is not past 21:29:30 + 300, 21:35:00 is: the
  // operator sets 0, and the HPA leaves a target at 0 alone.
  EXPECT_EQ(at(21, 35), 0);
  EXPECT_EQ(at(22, 0), 0);
  // 23:00: lag 50 > activationLagCount 1 -> from zero to 1; the HPA: ceil(50000/100000) = 1.
  EXPECT_EQ(at(22, 59, 45), 0);
  EXPECT_EQ(at(23, 0), 1);
  EXPECT_EQ(at(23, 9, 45), 1);
  // Lag 0 from 23:10; last active poll 23:09:30; zero at the first poll after 23:14:30.
  EXPECT_EQ(at(23, 14, 30), 1);
  EXPECT_EQ(at(23, 15), 0);
  // 02:00-02:10 lag 1: not above activationLagCount 1, stays at zero.
  EXPECT_EQ(at(2, 5), 0);
  EXPECT_EQ(at(3, 0), 0);
}

}  // namespace
}  // namespace tideserve::plan

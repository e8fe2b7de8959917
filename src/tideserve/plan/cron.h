// Cron schedules as KEDA's cron scaler evaluates them: the 5-field parser and SpecSchedule.Next of
// github.com/robfig/cron v3.0.1 (parser.go, spec.go), over Go's time package semantics for a
// time zone (time.LoadLocation from TZif files, Location.lookup with the POSIX TZ footer rule,
// and time.Date's local-to-UTC conversion around DST gaps and overlaps).
//
// Instants are Unix seconds. "Local seconds" are a civil time in a zone written as if it were
// UTC (local_seconds = unix + utc_offset).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tideserve/util/status.h"

namespace tideserve::plan {

// A civil (wall clock) time: the fields of Go's Time.Date/Clock/Weekday.
struct CivilTime {
  int64_t year = 1970;
  int month = 1;    // 1..12
  int day = 1;      // 1..31
  int hour = 0;     // 0..23
  int minute = 0;   // 0..59
  int second = 0;   // 0..59
  int weekday = 4;  // 0 = Sunday .. 6 = Saturday
};

// Local seconds <-> civil fields (proleptic Gregorian; any day/month overflow is normalized the
// way time.Date does: months into years, then days, hours, minutes, seconds carried).
CivilTime civil_from_local_seconds(int64_t local_seconds);
int64_t local_seconds_from_civil(int64_t year, int64_t month, int64_t day, int64_t hour,
                                 int64_t minute, int64_t second);

// A time zone as Go's *time.Location: zones, transitions and the TZ footer ("extend") rule.
class TimeZone {
 public:
  // UTC (Go's time.UTC: no zones at all).
  static TimeZone utc();
  // time.LoadLocation(name): "" and "UTC" are UTC; otherwise /usr/share/zoneinfo/<name> (the
  // directory in $ZONEINFO first when set). "Etc/UTC" and the other fixed UTC names work without
  // files. Loaded zones are cached for the process.
  static Result<TimeZone> load(const std::string& name);
  // time.LoadLocationFromTZData: TZif version 1, or 2+ (its 64-bit section and footer).
  static Result<TimeZone> from_tzif(std::string name, std::string_view data);

  struct Lookup {
    int32_t offset = 0;  // seconds east of UTC
    bool is_dst = false;
    std::string abbreviation;
    int64_t start = 0, end = 0;  // the instants bracketing this offset, as Go's lookup says
  };
  // Location.lookup(unix).
  Lookup lookup(int64_t unix_s) const;
  int32_t utc_offset(int64_t unix_s) const { return lookup(unix_s).offset; }

  CivilTime civil(int64_t unix_s) const {
    return civil_from_local_seconds(unix_s + utc_offset(unix_s));
  }
  // time.Date(..., loc).Unix() for local seconds: take the offset in effect at the local time
  // read as UTC; if subtracting it lands outside that offset's range, take the offset in effect
  // at that instant instead. So a wall time in a spring-forward gap west of UTC (New York 02:30)
  // maps to the instant an hour earlier (01:30 EST), east of UTC (Berlin 02:30) an hour later
  // (03:30 CEST); an ambiguous wall time west of UTC gets the first occurrence (DST), east of
  // UTC the second (standard).
  int64_t local_to_utc(int64_t local_seconds) const;
  // time.Date with overflowing fields normalized.
  int64_t date(int64_t year, int64_t month, int64_t day, int64_t hour, int64_t minute,
               int64_t second) const {
    return local_to_utc(local_seconds_from_civil(year, month, day, hour, minute, second));
  }

  const std::string& name() const;

  struct Data;  // defined in cron.cc

 private:
  explicit TimeZone(std::shared_ptr<const Data> data) : data_(std::move(data)) {}
  std::shared_ptr<const Data> data_;
};

// A parsed 5-field schedule (minute hour day-of-month month day-of-week), as robfig/cron v3's
// NewParser(Minute | Hour | Dom | Month | Dow), which is what KEDA's cron scaler validates with.
// Seconds are fixed at 0. Fields accept *, ?, lists (a,b), ranges (a-b), steps (*/n, a-b/n,
// a/n meaning a-max/n), and names (JAN..DEC, SUN..SAT, case-insensitive). Day of week is 0..6.
// When both day fields are restricted (neither starts with * or ?), a day matches if either
// does; otherwise both must (robfig's dayMatches, where "*/2" counts as restricted).
// Descriptors (@daily, @every) and the TZ=/CRON_TZ= prefix are rejected (not supported here).
class CronSchedule {
 public:
  static Result<CronSchedule> parse(std::string_view spec);

  // SpecSchedule.Next: the first activation strictly after `after_s` (whole seconds; Go's
  // Next(t) with a fractional t equals next(floor(t))) with the fields read in `tz`. Absent
  // when none is found within five years (Go returns the zero Time), or where robfig would
  // loop forever (a zone that skips a whole day); then *stuck, if given, is set to true.
  std::optional<int64_t> next(int64_t after_s, const TimeZone& tz, bool* stuck = nullptr) const;

  // The field bit sets (bit i = value i; bit 63 = the field started with * or ?).
  uint64_t second_bits() const { return second_; }
  uint64_t minute_bits() const { return minute_; }
  uint64_t hour_bits() const { return hour_; }
  uint64_t dom_bits() const { return dom_; }
  uint64_t month_bits() const { return month_; }
  uint64_t dow_bits() const { return dow_; }
  const std::string& spec() const { return spec_; }

  static constexpr uint64_t kStarBit = uint64_t{1} << 63;

 private:
  CronSchedule() = default;
  bool day_matches(const CivilTime& c) const;
  std::string spec_;
  uint64_t second_ = 0, minute_ = 0, hour_ = 0, dom_ = 0, month_ = 0, dow_ = 0;
};

}  // namespace tideserve::plan

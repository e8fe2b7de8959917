// Cron schedules and time zones as KEDA's cron scaler sees them. The algorithms follow
// robfig/cron v3.0.1 (parser.go: Parse, getField, getRange; spec.go: SpecSchedule.Next,
// dayMatches) and Go's time package (zoneinfo_read.go: LoadLocationFromTZData; zoneinfo.go:
// LoadLocation, Location.lookup, lookupFirstZone, tzset, tzruleTime; time.go: Date, AddDate,
// Truncate), rewritten here over Unix seconds.
#include "tideserve/plan/cron.h"

#include <fmt/format.h>

#include <array>
#include <cctype>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <utility>

#include "tideserve/util/mapped_file.h"

namespace tideserve::plan {

namespace {

constexpr int64_t kSecondsPerDay = 86400;
constexpr int64_t kAlpha = std::numeric_limits<int64_t>::min();  // Go's alpha: before all time
constexpr int64_t kOmega = std::numeric_limits<int64_t>::max();  // Go's omega: after all time

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}
int64_t floor_mod(int64_t a, int64_t b) {
  return a - floor_div(a, b) * b;
}

// Days since 1970-01-01 of a proleptic Gregorian date (month 1..12; day may overflow linearly).
int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = floor_div(y, 400);
  const int64_t yoe = y - era * 400;
  const int64_t mp = (m + 9) % 12;  // March = 0
  const int64_t doy = (153 * mp + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

bool is_leap(int64_t year) {
  return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
}

int days_in(int month, int64_t year) {
  static constexpr std::array<int, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month == 2 && is_leap(year)) return 29;
  return kDays[month - 1];
}

constexpr std::array<int, 12> kDaysBefore = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};

}  // namespace

CivilTime civil_from_local_seconds(int64_t local_seconds) {
  const int64_t days = floor_div(local_seconds, kSecondsPerDay);
  const int64_t secs = local_seconds - days * kSecondsPerDay;
  CivilTime c;
  c.hour = static_cast<int>(secs / 3600);
  c.minute = static_cast<int>(secs / 60 % 60);
  c.second = static_cast<int>(secs % 60);
  c.weekday = static_cast<int>(floor_mod(days + 4, 7));  // 1970-01-01 was a Thursday
  // Inverse of days_from_civil.
  const int64_t z = days + 719468;
  const int64_t era = floor_div(z, 146097);
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  c.day = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  c.month = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  c.year = yoe + era * 400 + (c.month <= 2 ? 1 : 0);
  return c;
}

int64_t local_seconds_from_civil(int64_t year, int64_t month, int64_t day, int64_t hour,
                                 int64_t minute, int64_t second) {
  // time.Date: months overflow into years; the rest carries linearly into days.
  const int64_t m0 = month - 1;
  year += floor_div(m0, 12);
  month = floor_mod(m0, 12) + 1;
  return (days_from_civil(year, month, 1) + day - 1) * kSecondsPerDay + hour * 3600 + minute * 60 +
         second;
}

// ---------------------------------------------------------------------------------------------
// TimeZone

struct TimeZone::Data {
  struct Zone {
    int32_t offset = 0;
    bool is_dst = false;
    std::string abbreviation;
  };
  struct Transition {
    int64_t when = 0;
    uint8_t index = 0;
  };
  std::string name;
  std::vector<Zone> zones;  // empty: UTC
  std::vector<Transition> transitions;
  std::string extend;  // the TZ string of the TZif footer

  size_t first_zone() const;
};

namespace {

// A rule of a POSIX TZ string (Go's rule: Jn, n, or Mm.w.d, with a transition time).
struct TzRule {
  enum Kind { kJulian, kDayOfYear, kMonthWeekDay } kind = kJulian;
  int day = 0, week = 0, mon = 0;
  int time = 2 * 3600;
};

bool tz_num(std::string_view& s, int min, int max, int* out) {
  if (s.empty()) return false;
  int num = 0;
  size_t i = 0;
  for (; i < s.size(); ++i) {
    const char r = s[i];
    if (r < '0' || r > '9') break;
    num = num * 10 + (r - '0');
    if (num > max) return false;
  }
  if (i == 0 || num < min) return false;
  s.remove_prefix(i);
  *out = num;
  return true;
}

bool tz_name(std::string_view& s, std::string* out) {
  if (s.empty()) return false;
  if (s[0] != '<') {
    for (size_t i = 0; i < s.size(); ++i) {
      const char r = s[i];
      if ((r >= '0' && r <= '9') || r == ',' || r == '-' || r == '+') {
        if (i < 3) return false;
        *out = std::string(s.substr(0, i));
        s.remove_prefix(i);
        return true;
      }
    }
    if (s.size() < 3) return false;
    *out = std::string(s);
    s = {};
    return true;
  }
  const size_t close = s.find('>');
  if (close == std::string_view::npos) return false;
  *out = std::string(s.substr(1, close - 1));
  s.remove_prefix(close + 1);
  return true;
}

bool tz_offset(std::string_view& s, int* out) {
  if (s.empty()) return false;
  bool neg = false;
  if (s[0] == '+') {
    s.remove_prefix(1);
  } else if (s[0] == '-') {
    s.remove_prefix(1);
    neg = true;
  }
  int hours = 0;
  if (!tz_num(s, 0, 24 * 7, &hours)) return false;
  int off = hours * 3600;
  if (!s.empty() && s[0] == ':') {
    s.remove_prefix(1);
    int mins = 0;
    if (!tz_num(s, 0, 59, &mins)) return false;
    off += mins * 60;
    if (!s.empty() && s[0] == ':') {
      s.remove_prefix(1);
      int secs = 0;
      if (!tz_num(s, 0, 59, &secs)) return false;
      off += secs;
    }
  }
  *out = neg ? -off : off;
  return true;
}

bool tz_rule(std::string_view& s, TzRule* r) {
  if (s.empty()) return false;
  if (s[0] == 'J') {
    s.remove_prefix(1);
    r->kind = TzRule::kJulian;
    if (!tz_num(s, 1, 365, &r->day)) return false;
  } else if (s[0] == 'M') {
    s.remove_prefix(1);
    r->kind = TzRule::kMonthWeekDay;
    if (!tz_num(s, 1, 12, &r->mon) || s.empty() || s[0] != '.') return false;
    s.remove_prefix(1);
    if (!tz_num(s, 1, 5, &r->week) || s.empty() || s[0] != '.') return false;
    s.remove_prefix(1);
    if (!tz_num(s, 0, 6, &r->day)) return false;
  } else {
    r->kind = TzRule::kDayOfYear;
    if (!tz_num(s, 0, 365, &r->day)) return false;
  }
  if (s.empty() || s[0] != '/') {
    r->time = 2 * 3600;  // 02:00 is the default
    return true;
  }
  s.remove_prefix(1);
  return tz_offset(s, &r->time);
}

// Seconds since the start of `year` (UTC) at which rule `r` takes effect, for offset `off`.
int64_t tz_rule_time(int64_t year, const TzRule& r, int off) {
  int64_t s = 0;
  switch (r.kind) {
    case TzRule::kJulian:
      s = int64_t{r.day - 1} * kSecondsPerDay;
      if (is_leap(year) && r.day >= 60) s += kSecondsPerDay;
      break;
    case TzRule::kDayOfYear:
      s = int64_t{r.day} * kSecondsPerDay;
      break;
    case TzRule::kMonthWeekDay: {
      // The weekday of the first day of r.mon, then the r.week-th r.day (5 = the last).
      const int dow = static_cast<int>(floor_mod(days_from_civil(year, r.mon, 1) + 4, 7));
      int d = r.day - dow;
      if (d < 0) d += 7;
      for (int i = 1; i < r.week; ++i) {
        if (d + 7 >= days_in(r.mon, year)) break;
        d += 7;
      }
      d += kDaysBefore[r.mon - 1];
      if (is_leap(year) && r.mon > 2) ++d;
      s = int64_t{d} * kSecondsPerDay;
      break;
    }
  }
  return s + r.time - off;
}

// Go's tzset: the zone for `sec` under the TZ string `spec`; false if it does not parse.
bool tzset(std::string_view spec, int64_t init_end, int64_t sec, TimeZone::Lookup* out) {
  std::string std_name, dst_name;
  int std_offset = 0, dst_offset = 0;
  if (!tz_name(spec, &std_name) || !tz_offset(spec, &std_offset)) return false;
  std_offset = -std_offset;  // POSIX offsets are west of UTC
  if (spec.empty() || spec[0] == ',') {
    *out = {std_offset, false, std_name, init_end, kOmega};
    return true;
  }
  if (!tz_name(spec, &dst_name)) return false;
  if (spec.empty() || spec[0] == ',') {
    dst_offset = std_offset + 3600;
  } else {
    if (!tz_offset(spec, &dst_offset)) return false;
    dst_offset = -dst_offset;
  }
  if (spec.empty()) spec = ",M3.2.0,M11.1.0";  // tzcode's default rules
  if (spec[0] != ',' && spec[0] != ';') return false;
  spec.remove_prefix(1);
  TzRule start_rule, end_rule;
  if (!tz_rule(spec, &start_rule) || spec.empty() || spec[0] != ',') return false;
  spec.remove_prefix(1);
  if (!tz_rule(spec, &end_rule) || !spec.empty()) return false;

  const CivilTime c = civil_from_local_seconds(sec);
  const int64_t year_start = days_from_civil(c.year, 1, 1) * kSecondsPerDay;
  const int64_t ysec =
      (days_from_civil(c.year, c.month, c.day) - days_from_civil(c.year, 1, 1)) * kSecondsPerDay +
      sec % kSecondsPerDay;  // Go's truncating %
  int64_t start_sec = tz_rule_time(c.year, start_rule, std_offset);
  int64_t end_sec = tz_rule_time(c.year, end_rule, dst_offset);
  bool dst_is_dst = true, std_is_dst = false;
  if (end_sec < start_sec) {  // southern hemisphere: the labels flip
    std::swap(start_sec, end_sec);
    std::swap(std_name, dst_name);
    std::swap(std_offset, dst_offset);
    std::swap(std_is_dst, dst_is_dst);
  }
  if (ysec < start_sec) {
    *out = {std_offset, std_is_dst, std_name, year_start, start_sec + year_start};
  } else if (ysec >= end_sec) {
    *out = {std_offset, std_is_dst, std_name, end_sec + year_start,
            year_start + 365 * kSecondsPerDay};
  } else {
    *out = {dst_offset, dst_is_dst, dst_name, start_sec + year_start, end_sec + year_start};
  }
  return true;
}

class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  std::string_view read(size_t n) {
    if (n > data_.size()) {
      error_ = true;
      n = data_.size();
    }
    std::string_view out = data_.substr(0, n);
    data_.remove_prefix(n);
    return out;
  }
  bool big4(uint32_t* out) {
    std::string_view p = read(4);
    if (p.size() != 4) return false;
    *out = (uint32_t{static_cast<uint8_t>(p[0])} << 24) |
           (uint32_t{static_cast<uint8_t>(p[1])} << 16) |
           (uint32_t{static_cast<uint8_t>(p[2])} << 8) | uint32_t{static_cast<uint8_t>(p[3])};
    return true;
  }
  bool big8(uint64_t* out) {
    uint32_t hi = 0, lo = 0;
    if (!big4(&hi) || !big4(&lo)) return false;
    *out = (uint64_t{hi} << 32) | lo;
    return true;
  }
  bool error() const { return error_; }
  std::string_view rest() const { return data_; }

 private:
  std::string_view data_;
  bool error_ = false;
};

std::string c_string(std::string_view s) {
  const size_t nul = s.find('\0');
  return std::string(nul == std::string_view::npos ? s : s.substr(0, nul));
}

bool is_fixed_utc_name(const std::string& name) {
  static const char* const kNames[] = {
      "Etc/UTC", "Etc/UCT", "Etc/Universal", "Etc/Zulu",  "UCT",       "Universal",
      "Zulu",    "Etc/GMT", "Etc/GMT0",      "Etc/GMT+0", "Etc/GMT-0", "Etc/Greenwich",
      "GMT",     "GMT0",    "GMT+0",         "GMT-0",     "Greenwich"};
  for (const char* n : kNames) {
    if (name == n) return true;
  }
  return false;
}

}  // namespace

size_t TimeZone::Data::first_zone() const {
  // lookupFirstZone: the first zone if no transition uses it; else, if the first transition is
  // to DST, the closest standard zone before it; else the first standard zone; else zone 0.
  bool first_used = false;
  for (const Transition& t : transitions) first_used |= t.index == 0;
  if (!first_used) return 0;
  if (!transitions.empty() && zones[transitions[0].index].is_dst) {
    for (int zi = static_cast<int>(transitions[0].index) - 1; zi >= 0; --zi) {
      if (!zones[zi].is_dst) return static_cast<size_t>(zi);
    }
  }
  for (size_t zi = 0; zi < zones.size(); ++zi) {
    if (!zones[zi].is_dst) return zi;
  }
  return 0;
}

TimeZone TimeZone::utc() {
  static const auto kUtc = [] {
    auto d = std::make_shared<Data>();
    d->name = "UTC";
    return std::shared_ptr<const Data>(std::move(d));
  }();
  return TimeZone(kUtc);
}

const std::string& TimeZone::name() const {
  return data_->name;
}

Result<TimeZone> TimeZone::from_tzif(std::string name, std::string_view data) {
  const auto bad = [&name] {
    return invalid_argument(fmt::format("{}: malformed TZif data", name));
  };
  Reader d(data);
  if (d.read(4) != "TZif") return bad();
  std::string_view p = d.read(16);
  if (p.size() != 16) return bad();
  int version = 0;
  switch (p[0]) {
    case '\0':
      version = 1;
      break;
    case '2':
      version = 2;
      break;
    case '3':
      version = 3;
      break;
    case '4':
      version = 4;
      break;  // RFC 9636; same layout (Go 1.22 would reject it)
    default:
      return bad();
  }
  enum { kUtcLocal, kStdWall, kLeap, kTime, kZone, kChar };
  std::array<uint32_t, 6> n{};
  for (uint32_t& v : n) {
    if (!d.big4(&v)) return bad();
  }
  bool is64 = false;
  if (version > 1) {
    // Skip the 32-bit section and the second header; read the 64-bit section's counts.
    const uint64_t skip = uint64_t{n[kTime]} * 5 + uint64_t{n[kZone]} * 6 + n[kChar] +
                          uint64_t{n[kLeap]} * 8 + n[kStdWall] + n[kUtcLocal] + 4 + 16;
    d.read(skip);
    is64 = true;
    for (uint32_t& v : n) {
      if (!d.big4(&v)) return bad();
    }
  }
  const size_t size = is64 ? 8 : 4;
  Reader txtimes(d.read(size_t{n[kTime]} * size));
  std::string_view txzones = d.read(n[kTime]);
  Reader zonedata(d.read(size_t{n[kZone]} * 6));
  std::string_view abbrev = d.read(n[kChar]);
  d.read(size_t{n[kLeap]} * (size + 4));
  d.read(n[kStdWall]);
  d.read(n[kUtcLocal]);
  if (d.error()) return bad();

  auto out = std::make_shared<Data>();
  out->name = std::move(name);
  std::string_view rest = d.rest();
  if (rest.size() > 2 && rest.front() == '\n' && rest.back() == '\n') {
    out->extend = std::string(rest.substr(1, rest.size() - 2));
  }
  if (n[kZone] == 0) return bad();
  out->zones.resize(n[kZone]);
  for (Data::Zone& z : out->zones) {
    uint32_t off = 0;
    if (!zonedata.big4(&off)) return bad();
    z.offset = static_cast<int32_t>(off);
    std::string_view b = zonedata.read(2);
    if (b.size() != 2) return bad();
    z.is_dst = b[0] != 0;
    const auto ai = static_cast<uint8_t>(b[1]);
    if (ai >= abbrev.size()) return bad();
    z.abbreviation = c_string(abbrev.substr(ai));
  }
  out->transitions.resize(n[kTime]);
  for (size_t i = 0; i < out->transitions.size(); ++i) {
    Data::Transition& t = out->transitions[i];
    if (is64) {
      uint64_t v = 0;
      if (!txtimes.big8(&v)) return bad();
      t.when = static_cast<int64_t>(v);
    } else {
      uint32_t v = 0;
      if (!txtimes.big4(&v)) return bad();
      t.when = static_cast<int32_t>(v);
    }
    t.index = static_cast<uint8_t>(txzones[i]);
    if (t.index >= out->zones.size()) return bad();
  }
  // A fixed zone (Etc/GMT-8): one fake transition covering all time.
  if (out->transitions.empty()) out->transitions.push_back({kAlpha, 0});
  return TimeZone(std::move(out));
}

Result<TimeZone> TimeZone::load(const std::string& name) {
  if (name.empty() || name == "UTC") return utc();
  if (name.find("..") != std::string::npos || name[0] == '/' || name[0] == '\\') {
    return invalid_argument(fmt::format("time zone {}: invalid location name", name));
  }
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<const Data>> cache;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(name);
    if (it != cache.end()) return TimeZone(it->second);
  }
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("ZONEINFO"); env != nullptr && *env != '\0') {
    dirs.emplace_back(env);
  }
  for (const char* dir :
       {"/usr/share/zoneinfo", "/usr/share/lib/zoneinfo", "/usr/lib/locale/TZ", "/etc/zoneinfo"}) {
    dirs.emplace_back(dir);
  }
  std::optional<Status> first_error;
  std::optional<TimeZone> found;
  for (const std::string& dir : dirs) {
    Result<std::string> data = read_text_file(dir + "/" + name);
    if (!data.is_ok()) continue;
    Result<TimeZone> tz = from_tzif(name, *data);
    if (tz.is_ok()) {
      found = std::move(tz.value());
      break;
    }
    if (!first_error) first_error = tz.status();
  }
  if (!found && is_fixed_utc_name(name)) {
    // What Go's embedded tzdata has for these: one zone at offset 0 for all time.
    auto d = std::make_shared<Data>();
    d->name = name;
    d->zones.push_back(
        {0, false,
         name.find("GMT") != std::string::npos || name.find("Greenwich") != std::string::npos
             ? "GMT"
             : "UTC"});
    d->transitions.push_back({kAlpha, 0});
    found = TimeZone(std::move(d));
  }
  if (!found) {
    if (first_error) return *first_error;
    return not_found(fmt::format("unknown time zone {}", name));
  }
  std::lock_guard<std::mutex> lock(mu);
  cache.emplace(name, found->data_);
  return *found;
}

TimeZone::Lookup TimeZone::lookup(int64_t sec) const {
  const Data& l = *data_;
  if (l.zones.empty()) return {0, false, "UTC", kAlpha, kOmega};
  const auto& tx = l.transitions;
  if (tx.empty() || sec < tx[0].when) {
    const Data::Zone& z = l.zones[l.first_zone()];
    return {z.offset, z.is_dst, z.abbreviation, kAlpha, tx.empty() ? kOmega : tx[0].when};
  }
  // The last transition at or before sec; end is the next one (omega past the last).
  int64_t end = kOmega;
  size_t lo = 0, hi = tx.size();
  while (hi - lo > 1) {
    const size_t m = lo + (hi - lo) / 2;
    if (sec < tx[m].when) {
      end = tx[m].when;
      hi = m;
    } else {
      lo = m;
    }
  }
  const Data::Zone& z = l.zones[tx[lo].index];
  Lookup out{z.offset, z.is_dst, z.abbreviation, tx[lo].when, end};
  // Past the last transition the footer's TZ rule decides.
  if (lo == tx.size() - 1 && !l.extend.empty()) {
    Lookup ext;
    if (tzset(l.extend, end, sec, &ext)) return ext;
  }
  return out;
}

int64_t TimeZone::local_to_utc(int64_t local_seconds) const {
  // time.Date's correction: one lookup at the local time read as UTC, and a second one only if
  // the instant that gives lies outside the first offset's range.
  const Lookup first = lookup(local_seconds);
  int64_t offset = first.offset;
  if (offset != 0) {
    const int64_t utc = local_seconds - offset;
    if (utc < first.start || utc >= first.end) offset = lookup(utc).offset;
    return local_seconds - offset;
  }
  return local_seconds;
}

// ---------------------------------------------------------------------------------------------
// CronSchedule

namespace {

struct Bounds {
  unsigned min, max;
  const std::vector<std::pair<std::string, unsigned>>* names;
};

const std::vector<std::pair<std::string, unsigned>> kMonthNames = {
    {"jan", 1}, {"feb", 2}, {"mar", 3}, {"apr", 4},  {"may", 5},  {"jun", 6},
    {"jul", 7}, {"aug", 8}, {"sep", 9}, {"oct", 10}, {"nov", 11}, {"dec", 12}};
const std::vector<std::pair<std::string, unsigned>> kDowNames = {
    {"sun", 0}, {"mon", 1}, {"tue", 2}, {"wed", 3}, {"thu", 4}, {"fri", 5}, {"sat", 6}};

constexpr Bounds kMinutes{0, 59, nullptr};
constexpr Bounds kHours{0, 23, nullptr};
constexpr Bounds kDom{1, 31, nullptr};
const Bounds kMonths{1, 12, &kMonthNames};
const Bounds kDow{0, 6, &kDowNames};

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    const size_t pos = s.find(sep, start);
    out.push_back(s.substr(start, pos == std::string_view::npos ? pos : pos - start));
    if (pos == std::string_view::npos) return out;
    start = pos + 1;
  }
}

// strconv.Atoi then the non-negative check of mustParseInt.
Result<unsigned> parse_uint(std::string_view expr) {
  std::string_view s = expr;
  bool neg = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return invalid_argument(fmt::format("failed to parse int from {}", expr));
  int64_t num = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return invalid_argument(fmt::format("failed to parse int from {}", expr));
    if (num > (std::numeric_limits<int64_t>::max() - (c - '0')) / 10) {
      return invalid_argument(fmt::format("failed to parse int from {}: out of range", expr));
    }
    num = num * 10 + (c - '0');
  }
  if (neg && num != 0)
    return invalid_argument(fmt::format("negative number not allowed: {}", expr));
  if (num > std::numeric_limits<unsigned>::max()) {
    return invalid_argument(fmt::format("{}: out of range", expr));
  }
  return static_cast<unsigned>(num);
}

Result<unsigned> parse_int_or_name(std::string_view expr, const Bounds& r) {
  if (r.names != nullptr) {
    std::string lower(expr);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (const auto& [name, value] : *r.names) {
      if (lower == name) return value;
    }
  }
  return parse_uint(expr);
}

uint64_t get_bits(unsigned min, unsigned max, unsigned step) {
  uint64_t bits = 0;
  for (uint64_t i = min; i <= max; i += step) bits |= uint64_t{1} << i;
  return bits;
}

// getRange: number | number "-" number [ "/" number ], or * / ? with an optional step.
Result<uint64_t> get_range(std::string_view expr, const Bounds& r) {
  const std::vector<std::string_view> range_and_step = split(expr, '/');
  const std::vector<std::string_view> low_and_high = split(range_and_step[0], '-');
  const bool single = low_and_high.size() == 1;
  unsigned start = 0, end = 0, step = 1;
  uint64_t extra = 0;
  if (low_and_high[0] == "*" || low_and_high[0] == "?") {
    // As in robfig: whatever follows a leading "*-" is ignored.
    start = r.min;
    end = r.max;
    extra = CronSchedule::kStarBit;
  } else {
    Result<unsigned> s = parse_int_or_name(low_and_high[0], r);
    if (!s.is_ok()) return s.status();
    start = end = *s;
    if (low_and_high.size() == 2) {
      Result<unsigned> e = parse_int_or_name(low_and_high[1], r);
      if (!e.is_ok()) return e.status();
      end = *e;
    } else if (low_and_high.size() > 2) {
      return invalid_argument(fmt::format("too many hyphens: {}", expr));
    }
  }
  if (range_and_step.size() == 2) {
    Result<unsigned> st = parse_uint(range_and_step[1]);
    if (!st.is_ok()) return st.status();
    step = *st;
    if (single) end = r.max;  // "N/step" means "N-max/step"
    if (step > 1) extra = 0;  // "*/2" is a restriction, "*/1" still counts as *
  } else if (range_and_step.size() > 2) {
    return invalid_argument(fmt::format("too many slashes: {}", expr));
  }
  if (start < r.min) {
    return invalid_argument(
        fmt::format("beginning of range ({}) below minimum ({}): {}", start, r.min, expr));
  }
  if (end > r.max) {
    return invalid_argument(
        fmt::format("end of range ({}) above maximum ({}): {}", end, r.max, expr));
  }
  if (start > end) {
    return invalid_argument(
        fmt::format("beginning of range ({}) beyond end of range ({}): {}", start, end, expr));
  }
  if (step == 0) {
    return invalid_argument(fmt::format("step of range should be a positive number: {}", expr));
  }
  return get_bits(start, end, step) | extra;
}

// getField: a comma-separated list of ranges (empty items dropped, as strings.FieldsFunc does).
Result<uint64_t> get_field(std::string_view field, const Bounds& r) {
  uint64_t bits = 0;
  for (std::string_view expr : split(field, ',')) {
    if (expr.empty()) continue;
    Result<uint64_t> b = get_range(expr, r);
    if (!b.is_ok()) return b.status();
    bits |= *b;
  }
  return bits;
}

}  // namespace

Result<CronSchedule> CronSchedule::parse(std::string_view spec) {
  if (spec.empty()) return invalid_argument("empty spec string");
  if (spec.substr(0, 3) == "TZ=" || spec.substr(0, 8) == "CRON_TZ=") {
    return invalid_argument(fmt::format("{}: TZ= prefixes are not supported", spec));
  }
  if (spec[0] == '@') {
    return invalid_argument(fmt::format("parser does not accept descriptors: {}", spec));
  }
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < spec.size()) {
    while (i < spec.size() && std::isspace(static_cast<unsigned char>(spec[i]))) ++i;
    const size_t start = i;
    while (i < spec.size() && !std::isspace(static_cast<unsigned char>(spec[i]))) ++i;
    if (i > start) fields.push_back(spec.substr(start, i - start));
  }
  if (fields.size() != 5) {
    return invalid_argument(
        fmt::format("expected exactly 5 fields, found {}: {}", fields.size(), spec));
  }
  CronSchedule s;
  s.spec_ = std::string(spec);
  s.second_ = 1;  // the seconds field defaults to "0"
  const std::array<std::pair<uint64_t*, const Bounds*>, 5> targets = {{{&s.minute_, &kMinutes},
                                                                       {&s.hour_, &kHours},
                                                                       {&s.dom_, &kDom},
                                                                       {&s.month_, &kMonths},
                                                                       {&s.dow_, &kDow}}};
  for (size_t f = 0; f < 5; ++f) {
    Result<uint64_t> bits = get_field(fields[f], *targets[f].second);
    if (!bits.is_ok()) return bits.status();
    *targets[f].first = *bits;
  }
  return s;
}

bool CronSchedule::day_matches(const CivilTime& c) const {
  const bool dom_match = (uint64_t{1} << c.day) & dom_;
  const bool dow_match = (uint64_t{1} << c.weekday) & dow_;
  if ((dom_ & kStarBit) || (dow_ & kStarBit)) return dom_match && dow_match;
  return dom_match || dow_match;
}

std::optional<int64_t> CronSchedule::next(int64_t after_s, const TimeZone& tz, bool* stuck) const {
  // SpecSchedule.Next step by step. `t` is an instant; its fields are read in tz each time.
  int64_t t = after_s + 1;  // the upcoming whole second
  bool added = false;
  if (stuck != nullptr) *stuck = false;
  // Legitimate searches take a few thousand steps at most (five years of month and day steps
  // plus one day of hours and minutes); robfig loops forever where a zone skips a whole day
  // (Pacific/Apia on 2011-12-30: time.Date of the missing midnight is the day before's, so the
  // day loop never advances). Give up there instead.
  constexpr int64_t kMaxSteps = 100000;
  int64_t steps = 0;
  const auto give_up = [&steps, stuck] {
    if (++steps <= kMaxSteps) return false;
    if (stuck != nullptr) *stuck = true;
    return true;
  };
  const int64_t year_limit = tz.civil(t).year + 5;
  const auto add_date_days = [&tz](int64_t u, int days) {
    const CivilTime c = tz.civil(u);
    return tz.date(c.year, c.month, c.day + days, c.hour, c.minute, c.second);
  };
  const auto add_date_months = [&tz](int64_t u, int months) {
    const CivilTime c = tz.civil(u);
    return tz.date(c.year, c.month + months, c.day, c.hour, c.minute, c.second);
  };

wrap:
  if (tz.civil(t).year > year_limit) return std::nullopt;

  // The month.
  while (((uint64_t{1} << tz.civil(t).month) & month_) == 0) {
    if (give_up()) return std::nullopt;
    if (!added) {
      added = true;
      const CivilTime c = tz.civil(t);
      t = tz.date(c.year, c.month, 1, 0, 0, 0);
    }
    t = add_date_months(t, 1);
    if (tz.civil(t).month == 1) goto wrap;
  }

  // The day; a midnight that DST skips leaves the hour at 23 or 1, put back to midnight.
  while (!day_matches(tz.civil(t))) {
    if (give_up()) return std::nullopt;
    if (!added) {
      added = true;
      const CivilTime c = tz.civil(t);
      t = tz.date(c.year, c.month, c.day, 0, 0, 0);
    }
    t = add_date_days(t, 1);
    const int h = tz.civil(t).hour;
    if (h != 0) t += h > 12 ? int64_t{24 - h} * 3600 : -int64_t{h} * 3600;
    if (tz.civil(t).day == 1) goto wrap;
  }

  // The hour: whole hours of elapsed time.
  while (((uint64_t{1} << tz.civil(t).hour) & hour_) == 0) {
    if (give_up()) return std::nullopt;
    if (!added) {
      added = true;
      const CivilTime c = tz.civil(t);
      t = tz.date(c.year, c.month, c.day, c.hour, 0, 0);
    }
    t += 3600;
    if (tz.civil(t).hour == 0) goto wrap;
  }

  // The minute (Truncate works on the instant, not the wall clock).
  while (((uint64_t{1} << tz.civil(t).minute) & minute_) == 0) {
    if (give_up()) return std::nullopt;
    if (!added) {
      added = true;
      t -= floor_mod(t, 60);
    }
    t += 60;
    if (tz.civil(t).minute == 0) goto wrap;
  }

  // The second.
  while (((uint64_t{1} << tz.civil(t).second) & second_) == 0) {
    if (give_up()) return std::nullopt;
    if (!added) {
      added = true;  // Truncate(time.Second): already whole seconds
    }
    t += 1;
    if (tz.civil(t).second == 0) goto wrap;
  }
  return t;
}

}  // namespace tideserve::plan

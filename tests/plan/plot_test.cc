#include "tideserve/plan/plot.h"

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace tideserve::plan {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---- builders (aggregate initialisation of the structs warns on omitted members) ----

PlotSeries series(std::string label, std::vector<double> t, std::vector<double> y,
                  std::string color = "#1f77b4", bool step = false) {
  PlotSeries s;
  s.label = std::move(label), s.t_s = std::move(t), s.y = std::move(y);
  s.color = std::move(color), s.step = step;
  return s;
}

PlotPanel panel(std::string title, std::string y_label, std::vector<PlotSeries> ss,
                std::vector<PlotLine> lines = {}, bool log_y = false) {
  PlotPanel p;
  p.title = std::move(title), p.y_label = std::move(y_label), p.series = std::move(ss);
  p.lines = std::move(lines), p.log_y = log_y;
  return p;
}

// ---- helpers over the SVG text ----

// Plain string scanning throughout: std::regex recurses per character (long paths overflow the
// stack) and g++ 12 warns inside it.

// Every substring between an occurrence of `open` and the next `close` after it.
std::vector<std::string> between(const std::string& s, const std::string& open,
                                 const std::string& close) {
  std::vector<std::string> out;
  for (size_t at = s.find(open); at != std::string::npos; at = s.find(open, at + 1)) {
    const size_t from = at + open.size(), to = s.find(close, from);
    if (to == std::string::npos) break;
    out.push_back(s.substr(from, to - from));
  }
  return out;
}

bool is_number(const std::string& s) {  // -?[0-9]+(\.[0-9]+)?
  size_t i = s.size() > 1 && s[0] == '-' ? 1 : 0, digits = 0, dots = 0;
  for (; i < s.size(); ++i) {
    if (s[i] == '.' && digits > 0 && dots++ == 0 && i + 1 < s.size()) continue;
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    ++digits;
  }
  return digits > 0;
}

bool is_clock(const std::string& s) {  // HH:MM
  if (s.size() != 5 || s[2] != ':') return false;
  for (size_t i : {0, 1, 3, 4}) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return std::stoi(s.substr(0, 2)) < 24 && std::stoi(s.substr(3)) < 60;
}

// The contents of the <text class="cls"> elements: "xtick" for time, "ytick" for y ticks.
std::vector<std::string> texts(const std::string& svg, const std::string& cls) {
  std::vector<std::string> out;
  for (const auto& t : between(svg, "<text class=\"" + cls + "\"", "</text>")) {
    out.push_back(t.substr(t.find('>') + 1));
  }
  return out;
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + what.size())) ++n;
  return n;
}

double svg_attr(const std::string& svg, const std::string& name) {
  const auto v = between(svg.substr(0, svg.find('>')), " " + name + "=\"", "\"");
  return v.empty() ? kNaN : std::stod(v[0]);
}

std::vector<std::string> series_paths(const std::string& svg) {
  std::vector<std::string> out;
  const std::string open = "<path class=\"series\" d=\"";
  for (size_t at = svg.find(open); at != std::string::npos; at = svg.find(open, at + 1)) {
    const size_t from = at + open.size();
    out.push_back(svg.substr(from, svg.find('"', from) - from));
  }
  return out;
}

// The y coordinates of a path's points: the second number after M or L, the one after V.
std::vector<double> path_ys(const std::string& d) {
  std::vector<double> ys;
  std::istringstream in(d);
  for (char command; in >> command;) {
    double x = 0, y = 0;
    if (command == 'M' || command == 'L') {
      in >> x >> y;
      ys.push_back(y);
    } else if (command == 'V') {
      in >> y;
      ys.push_back(y);
    } else {
      in >> x;  // H and h take one number
    }
  }
  return ys;
}

// Tags nest and close, attribute values are quoted, '&' only starts an entity, no stray '<'.
::testing::AssertionResult well_formed(const std::string& svg) {
  std::vector<std::string> stack;
  auto entity = [&](size_t i) {
    for (const char* e : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"}) {
      if (svg.compare(i, std::string(e).size(), e) == 0) return true;
    }
    return false;
  };
  for (size_t i = 0; i < svg.size(); ++i) {
    if (svg[i] == '&' && !entity(i)) {
      return ::testing::AssertionFailure() << "bare '&' at " << i;
    }
    if (svg[i] != '<') continue;
    const size_t end = svg.find('>', i);
    if (end == std::string::npos) return ::testing::AssertionFailure() << "unclosed tag at " << i;
    const std::string tag = svg.substr(i + 1, end - i - 1);
    if (tag.find('<') != std::string::npos) return ::testing::AssertionFailure() << "'<' in tag";
    if (count(tag, "\"") % 2 != 0) return ::testing::AssertionFailure() << "quotes: " << tag;
    if (tag[0] == '/') {
      if (stack.empty() || stack.back() != tag.substr(1)) {
        return ::testing::AssertionFailure() << "mismatched </" << tag.substr(1) << ">";
      }
      stack.pop_back();
    } else if (tag.back() != '/') {
      stack.push_back(tag.substr(0, tag.find_first_of(" \n")));
    }
    i = end;
  }
  if (!stack.empty()) return ::testing::AssertionFailure() << "unclosed <" << stack.back() << ">";
  return ::testing::AssertionSuccess();
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// ---- a day-like scenario: traffic, replicas and latency over six hours ----

std::vector<PlotPanel> scenario() {
  PlotSeries traffic = series("traffic", {}, {}, "#1f77b4");
  PlotSeries replicas = series("replicas", {}, {}, "#2ca02c", true);
  PlotSeries p50 = series("p50", {}, {}, "#9467bd"), p99 = series("p99", {}, {}, "#ff7f0e");
  for (int i = 0; i <= 2160; ++i) {  // every 10 s for 6 h
    const double t = i * 10.0;
    auto rate_at = [](double t) {
      return 120 + 90 * std::sin(t / 21600 * 3.14159) + 25 * std::sin(t / 700) +
             8 * std::sin(t / 37);
    };
    const double rate = rate_at(t);
    const double n = std::max(1.0, std::ceil(rate_at(std::floor(t / 300) * 300 - 60) / 40));
    const double load = std::min(0.97, rate / (n * 50));
    for (auto* s : {&traffic, &replicas, &p50, &p99}) s->t_s.push_back(t);
    traffic.y.push_back(rate);
    replicas.y.push_back(n);
    const bool gap = i >= 900 && i < 960;  // no latency samples for 10 minutes
    p50.y.push_back(gap ? kNaN : 40 / std::max(0.05, 1 - load));
    p99.y.push_back(gap ? kNaN : 110 / std::max(0.05, 1 - load));
  }
  return {panel("Traffic", "req/s", {traffic}), panel("Replicas", "replicas", {replicas}),
          panel("Latency", "ms", {p50, p99}, {{"SLO 500 ms", 500, "#d62728"}})};
}

PlotOptions scenario_options() {
  PlotOptions o;
  o.title = "tideserve plan: replay of traffic.csv";
  o.start_clock_s = 7 * 3600 + 30 * 60;  // 07:30
  return o;
}

TEST(PlotSvg, Structure) {
  auto panels = scenario();
  panels[2].series[1].label = "p99 <tail> & \"co\"";
  const std::string svg = render_svg(panels, scenario_options());
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_TRUE(well_formed(svg));
  EXPECT_EQ(svg_attr(svg, "width"), 1200);
  const double height = svg_attr(svg, "height");
  EXPECT_GE(height, 3 * 220);
  const std::string two = render_svg({panels[0], panels[1]}, scenario_options());
  EXPECT_EQ(height - svg_attr(two, "height"), 220) << "each panel adds panel_height";
  PlotOptions small = scenario_options();
  small.width = 640, small.panel_height = 150;
  const std::string s2 = render_svg(panels, small);
  EXPECT_EQ(svg_attr(s2, "width"), 640);
  EXPECT_EQ(svg_attr(s2, "height") - svg_attr(render_svg({panels[0]}, small), "height"), 300);

  EXPECT_EQ(count(svg, "<path"), 4u);
  EXPECT_EQ(count(svg, "<polyline"), 0u);
  EXPECT_EQ(series_paths(svg).size(), 4u);
  EXPECT_EQ(count(svg, "<g class=\"panel\""), 3u);
  for (const char* text :
       {">tideserve plan: replay of traffic.csv<", ">Traffic<", ">Latency<", ">req/s<", ">traffic<",
        ">replicas<", ">p50<", ">SLO 500 ms<", ">p99 &lt;tail&gt; &amp; &quot;co&quot;<"}) {
    EXPECT_NE(svg.find(text), std::string::npos) << text;
  }
  EXPECT_EQ(svg.find("<tail>"), std::string::npos);
  EXPECT_EQ(count(svg, "stroke-dasharray=\"7 4\""), 1u) << "the SLO as a dashed line";
  EXPECT_EQ(lower(svg).find("nan"), std::string::npos);
  EXPECT_EQ(lower(svg).find("inf"), std::string::npos);
}

TEST(PlotSvg, TicksAreRoundNumbersAndClockTimes) {
  const std::string svg = render_svg(scenario(), scenario_options());
  // y ticks: right-aligned labels, per panel an arithmetic run with a 1/2/5 x 10^k step.
  std::vector<std::string> panels;
  for (size_t at = svg.find("<g class=\"panel\""); at != std::string::npos;) {
    const size_t next = svg.find("<g class=\"panel\"", at + 1);
    panels.push_back(svg.substr(at, next == std::string::npos ? std::string::npos : next - at));
    at = next;
  }
  ASSERT_EQ(panels.size(), 3u);
  for (const auto& p : panels) {
    std::vector<double> ticks;
    for (const auto& l : texts(p, "ytick")) {
      ASSERT_TRUE(is_number(l)) << l;
      ticks.push_back(std::stod(l));
    }
    ASSERT_GE(ticks.size(), 3u);
    ASSERT_LE(ticks.size(), 10u);
    EXPECT_EQ(ticks[0], 0);
    const double step = ticks[1] - ticks[0];
    const double mantissa = step / std::pow(10.0, std::floor(std::log10(step)));
    EXPECT_TRUE(std::abs(mantissa - 1) < 1e-9 || std::abs(mantissa - 2) < 1e-9 ||
                std::abs(mantissa - 5) < 1e-9)
        << step;
    for (size_t i = 1; i < ticks.size(); ++i) EXPECT_NEAR(ticks[i] - ticks[i - 1], step, 1e-9);
  }
  // x ticks: 6 h from 07:30 -> on the hour (30 min would give 13); HH:MM, 6..12 of them.
  const auto clocks = texts(svg, "xtick");
  EXPECT_GE(clocks.size(), 6u);
  EXPECT_LE(clocks.size(), 12u);
  EXPECT_EQ(clocks.front(), "08:00");
  EXPECT_EQ(clocks.back(), "13:00");
  for (const auto& c : clocks) {
    EXPECT_TRUE(is_clock(c)) << c;
    EXPECT_EQ(c.substr(3), "00") << c;
  }

  // Past midnight the clock wraps; a short replay gets minute ticks.
  const PlotPanel short_one = panel("t", "y", {series("s", {0, 600}, {1, 2})});
  PlotOptions o;
  o.start_clock_s = 23 * 3600 + 57 * 60;  // 23:57, ten minutes
  const auto wrap = texts(render_svg({short_one}, o), "xtick");
  EXPECT_GE(wrap.size(), 5u);
  EXPECT_LE(wrap.size(), 12u);
  EXPECT_NE(std::find(wrap.begin(), wrap.end(), "00:00"), wrap.end());
  EXPECT_NE(std::find(wrap.begin(), wrap.end(), "23:58"), wrap.end());
  EXPECT_NE(std::find(wrap.begin(), wrap.end(), "00:06"), wrap.end());
  for (const auto& c : wrap) EXPECT_TRUE(is_clock(c)) << c;
}

TEST(PlotSvg, LogAxisTicksArePowersOfTen) {
  const std::string svg = render_svg(
      {panel("latency", "ms", {series("p99", {0, 1, 2, 3}, {0.5, 30, 2000, 90000})}, {}, true)},
      {});
  EXPECT_TRUE(well_formed(svg));
  const auto labels = texts(svg, "ytick");
  EXPECT_EQ(labels.front(), "0.1");
  EXPECT_NE(std::find(labels.begin(), labels.end(), "1"), labels.end());
  EXPECT_NE(std::find(labels.begin(), labels.end(), "1000"), labels.end());
  EXPECT_EQ(labels.back(), "100k");
}

TEST(PlotSvg, NanSplitsThePathIntoSubpaths) {
  PlotPanel p =
      panel("p", "y", {series("a", {0, 1, 2, 3, 4, 5, 6}, {1, 2, kNaN, kNaN, 3, 4, kNaN})});
  const auto paths = series_paths(render_svg({p}, {}));
  ASSERT_EQ(paths.size(), 1u);
  EXPECT_EQ(count(paths[0], "M"), 2u) << paths[0];
  EXPECT_EQ(count(paths[0], "L"), 2u) << paths[0];
  // A step series steps: horizontal then vertical.
  p.series[0].step = true;
  const auto step = series_paths(render_svg({p}, {}));
  EXPECT_EQ(count(step[0], "H"), 2u) << step[0];
  EXPECT_EQ(count(step[0], "V"), 2u) << step[0];
}

TEST(PlotSvg, DegenerateInputsStayValid) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<PlotPanel>> cases = {
      {},
      {PlotPanel{}},
      {panel("empty", "y", {series("nothing", {}, {})})},
      {panel("all missing", "y", {series("a", {0, 1, 2}, {kNaN, kNaN, kNaN})})},
      {panel("log, non-positive", "y", {series("a", {0, 1, 2}, {0, -1, kNaN})}, {}, true)},
      {panel("huge", "y", {series("a", {0, 1, 2, 3}, {1e300, -1e300, inf, -inf})})},
      {panel("tiny", "y", {series("a", {0, 1}, {1e-12, 3e-12})})},
      {panel("denormal, log", "y", {series("a", {0, 1}, {5e-324, 1e300})}, {}, true)},
      {panel("one point", "y", {series("a", {5}, {5})}, {{"ref", kNaN}})},
      {panel("bad times", "y", {series("a", {kNaN, 3, 1, inf}, {1, 2, 3, 4, 5})})},
      {panel("constant", "y", {series("a", {0, 0, 0}, {7, 7, 7})})},
  };
  PlotOptions tiny;
  tiny.width = 10, tiny.panel_height = 5, tiny.start_clock_s = kNaN;
  for (const PlotOptions& o : {PlotOptions{}, tiny}) {
    for (size_t i = 0; i < cases.size(); ++i) {
      const std::string svg = render_svg(cases[i], o);
      EXPECT_EQ(svg.rfind("<svg", 0), 0u) << i;
      EXPECT_TRUE(well_formed(svg)) << i;
      const std::string l = lower(svg);
      EXPECT_EQ(l.find("nan"), std::string::npos) << i;
      EXPECT_EQ(l.find("inf"), std::string::npos) << i;
      EXPECT_EQ(l.find("e+"), std::string::npos) << i;
      for (const auto& d : series_paths(svg)) {
        for (double y : path_ys(d)) EXPECT_LT(std::abs(y), 1e5) << i;
      }
    }
  }
}

TEST(PlotSvg, ThinningKeepsSingleSampleSpikes) {
  // 200k samples across ~1100 px: thinned to about two points per pixel column, yet the one
  // high sample and the one low sample still reach the same heights as when drawn alone.
  PlotSeries big = series("busy", {}, {});
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    big.t_s.push_back(i);
    big.y.push_back(i == 123457 ? 1000 : i == 54321 ? 0 : 500 + (i % 7));
  }
  PlotSeries few = series("few", {0, 54321, 123457, n - 1.0}, {500, 0, 1000, 506});
  const auto thin = series_paths(render_svg({panel("p", "y", {big})}, {}));
  const auto ref = series_paths(render_svg({panel("p", "y", {few})}, {}));
  ASSERT_EQ(thin.size(), 1u);
  const auto ty = path_ys(thin[0]), ry = path_ys(ref[0]);
  EXPECT_LE(ty.size(), 2u * 1200);
  EXPECT_GE(ty.size(), 1000u);
  EXPECT_DOUBLE_EQ(*std::min_element(ty.begin(), ty.end()),
                   *std::min_element(ry.begin(), ry.end()));
  EXPECT_DOUBLE_EQ(*std::max_element(ty.begin(), ty.end()),
                   *std::max_element(ry.begin(), ry.end()));
  // Under the threshold nothing is dropped.
  PlotSeries some = series("some", {}, {});
  for (int i = 0; i < 500; ++i) some.t_s.push_back(i), some.y.push_back(i % 3);
  EXPECT_EQ(path_ys(series_paths(render_svg({panel("p", "y", {some})}, {}))[0]).size(), 500u);
}

// ---- rendering through rsvg-convert, decoded with zlib ----

struct Image {
  uint32_t width = 0, height = 0;
  std::vector<uint8_t> rgba;
  const uint8_t* at(uint32_t x, uint32_t y) const { return &rgba[(size_t{y} * width + x) * 4]; }
};

uint32_t be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

// 8-bit RGBA or RGB, not interlaced: what rsvg-convert writes.
::testing::AssertionResult decode_png(const std::string& path, Image* out) {
  std::ifstream in(path, std::ios::binary);
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto* b = reinterpret_cast<const uint8_t*>(file.data());
  if (file.size() < 8 || file.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) {
    return ::testing::AssertionFailure() << "not a PNG";
  }
  std::string idat;
  int channels = 0;
  for (size_t at = 8; at + 12 <= file.size();) {
    const uint32_t len = be32(b + at);
    const std::string type = file.substr(at + 4, 4);
    if (at + 12 + len > file.size()) return ::testing::AssertionFailure() << "truncated chunk";
    const uint8_t* data = b + at + 8;
    if (type == "IHDR") {
      out->width = be32(data), out->height = be32(data + 4);
      if (data[8] != 8 || (data[9] != 6 && data[9] != 2) || data[12] != 0) {
        return ::testing::AssertionFailure() << "unsupported depth/colour type/interlace";
      }
      channels = data[9] == 6 ? 4 : 3;
    } else if (type == "IDAT") {
      idat.append(reinterpret_cast<const char*>(data), len);
    } else if (type == "IEND") {
      break;
    }
    at += 12 + len;
  }
  if (channels == 0) return ::testing::AssertionFailure() << "no IHDR";
  const size_t stride = size_t{out->width} * channels;
  std::vector<uint8_t> raw((stride + 1) * out->height);
  uLongf raw_len = raw.size();
  if (uncompress(raw.data(), &raw_len, reinterpret_cast<const Bytef*>(idat.data()), idat.size()) !=
          Z_OK ||
      raw_len != raw.size()) {
    return ::testing::AssertionFailure() << "IDAT does not inflate to the image size";
  }
  std::vector<uint8_t> px(stride * out->height), zero(stride, 0);
  for (uint32_t y = 0; y < out->height; ++y) {
    const uint8_t filter = raw[y * (stride + 1)];
    const uint8_t* src = &raw[y * (stride + 1) + 1];
    uint8_t* row = &px[y * stride];
    const uint8_t* up = y ? &px[(y - 1) * stride] : zero.data();
    for (size_t i = 0; i < stride; ++i) {
      const int a = i >= size_t(channels) ? row[i - channels] : 0, b2 = up[i],
                c = i >= size_t(channels) ? up[i - channels] : 0;
      int v = 0;
      switch (filter) {
        case 0:
          v = 0;
          break;
        case 1:
          v = a;
          break;
        case 2:
          v = b2;
          break;
        case 3:
          v = (a + b2) / 2;
          break;
        case 4: {
          const int p = a + b2 - c, pa = std::abs(p - a), pb = std::abs(p - b2),
                    pc = std::abs(p - c);
          v = pa <= pb && pa <= pc ? a : pb <= pc ? b2 : c;
          break;
        }
        default:
          return ::testing::AssertionFailure() << "bad filter " << int(filter);
      }
      row[i] = static_cast<uint8_t>(src[i] + v);
    }
  }
  out->rgba.resize(size_t{out->width} * out->height * 4);
  for (size_t i = 0; i < size_t{out->width} * out->height; ++i) {
    for (int k = 0; k < 4; ++k) out->rgba[i * 4 + k] = k < channels ? px[i * channels + k] : 255;
  }
  return ::testing::AssertionSuccess();
}

bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (!dir.empty() && ::access((dir + "/" + program).c_str(), X_OK) == 0) return true;
  }
  return false;
}

// Renders an SVG to a PNG with rsvg-convert; the files stay when TIDESERVE_KEEP_PLOT is set.
::testing::AssertionResult rasterize(const std::string& svg, const std::string& name, Image* img) {
  const std::filesystem::path dir = ::testing::TempDir();
  const std::string base = (dir / (name + "_" + std::to_string(::getpid()))).string();
  std::ofstream(base + ".svg") << svg;
  const std::string cmd = "rsvg-convert -o '" + base + ".png' '" + base + ".svg' 2>&1";
  const int rc = std::system(cmd.c_str());
  auto result = rc == 0 ? decode_png(base + ".png", img)
                        : ::testing::AssertionFailure() << "rsvg-convert failed: " << rc;
  if (std::getenv("TIDESERVE_KEEP_PLOT")) {
    std::cout << "plot: " << base << ".png\n";
  } else {
    std::filesystem::remove(base + ".svg");
    std::filesystem::remove(base + ".png");
  }
  return result;
}

TEST(PlotRender, PixelsShowEverySeriesInItsPanel) {
  if (!on_path("rsvg-convert")) GTEST_SKIP() << "rsvg-convert is not on PATH (librsvg2-bin)";
  const auto panels = scenario();
  const std::string svg = render_svg(panels, scenario_options());
  Image img;
  ASSERT_TRUE(rasterize(svg, "tideserve_plot", &img));
  EXPECT_EQ(img.width, svg_attr(svg, "width"));
  EXPECT_EQ(img.height, svg_attr(svg, "height"));

  size_t ink = 0;
  for (uint32_t y = 0; y < img.height; ++y) {
    for (uint32_t x = 0; x < img.width; ++x) {
      const uint8_t* p = img.at(x, y);
      if (p[3] > 0 && (p[0] < 245 || p[1] < 245 || p[2] < 245)) ++ink;
    }
  }
  const double share = double(ink) / (double(img.width) * img.height);
  EXPECT_GT(share, 0.02);
  EXPECT_LT(share, 0.5);

  // Each colour in its own panel's band, and (almost) nowhere else.
  std::vector<double> band;
  for (const auto& y : between(svg, "<g class=\"panel\" transform=\"translate(0,", ")"))
    band.push_back(std::stod(y));
  ASSERT_EQ(band.size(), 3u);
  band.push_back(band[2] + (band[1] - band[0]));
  auto pixels_of = [&](const std::string& hex, size_t panel) {
    const int r = std::stoi(hex.substr(1, 2), nullptr, 16),
              g = std::stoi(hex.substr(3, 2), nullptr, 16),
              b = std::stoi(hex.substr(5, 2), nullptr, 16);
    size_t n = 0;
    for (uint32_t y = uint32_t(band[panel]); y < uint32_t(band[panel + 1]) && y < img.height; ++y) {
      for (uint32_t x = 0; x < img.width; ++x) {
        const uint8_t* p = img.at(x, y);
        if (std::abs(p[0] - r) + std::abs(p[1] - g) + std::abs(p[2] - b) < 60) ++n;
      }
    }
    return n;
  };
  struct Want {
    std::string color;
    size_t panel;
  };
  const std::vector<Want> wants = {{panels[0].series[0].color, 0},
                                   {panels[1].series[0].color, 1},
                                   {panels[2].series[0].color, 2},
                                   {panels[2].series[1].color, 2},
                                   {panels[2].lines[0].color, 2}};
  for (const auto& w : wants) {
    for (size_t p = 0; p < 3; ++p) {
      const size_t n = pixels_of(w.color, p);
      if (p == w.panel) {
        EXPECT_GT(n, 300u) << w.color << " in panel " << p;
      } else {
        EXPECT_LT(n, 20u) << w.color << " in panel " << p;
      }
    }
  }
}

TEST(PlotRender, DegenerateSvgsParse) {
  if (!on_path("rsvg-convert")) GTEST_SKIP() << "rsvg-convert is not on PATH (librsvg2-bin)";
  PlotOptions o;
  o.title = "a & b <c>";
  for (const auto& panels : std::vector<std::vector<PlotPanel>>{
           {},
           {panel("all missing", "y", {series("a", {0, 1}, {kNaN, kNaN}), series("e", {}, {})})}}) {
    const std::string svg = render_svg(panels, o);
    Image img;
    ASSERT_TRUE(rasterize(svg, "tideserve_plot_edge", &img));
    EXPECT_EQ(img.width, svg_attr(svg, "width"));
    EXPECT_EQ(img.height, svg_attr(svg, "height"));
  }
}

}  // namespace
}  // namespace tideserve::plan

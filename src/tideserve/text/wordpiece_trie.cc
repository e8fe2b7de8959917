#include "tideserve/text/wordpiece_trie.h"

#include <algorithm>

namespace tideserve::text {

void WordPieceTrie::build(std::vector<std::pair<std::string_view, int32_t>> entries) {
  std::stable_sort(entries.begin(), entries.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  nodes_.clear();
  labels_.clear();
  targets_.clear();
  std::fill(std::begin(root_children_), std::end(root_children_), kNone);
  build_node(entries, 0, entries.size(), 0);
  const Node& root = nodes_[kRoot];
  for (uint32_t i = 0; i < root.edge_count; ++i) {
    root_children_[labels_[root.edge_begin + i]] = targets_[root.edge_begin + i];
  }
}

// Entries [lo, hi) share their first `depth` bytes; sorted, so the one of exactly that length
// (if any) comes first and the rest group by their byte at `depth`.
uint32_t WordPieceTrie::build_node(const std::vector<std::pair<std::string_view, int32_t>>& entries,
                                   size_t lo, size_t hi, size_t depth) {
  const uint32_t index = static_cast<uint32_t>(nodes_.size());
  nodes_.emplace_back();
  if (lo < hi && entries[lo].first.size() == depth) {
    nodes_[index].value = entries[lo].second;
    while (lo < hi && entries[lo].first.size() == depth) ++lo;  // duplicates: keep the first
  }
  // Edge labels of this node, contiguous, before recursing into the children.
  std::vector<std::pair<size_t, size_t>> groups;
  for (size_t i = lo; i < hi;) {
    const char byte = entries[i].first[depth];
    size_t j = i + 1;
    while (j < hi && entries[j].first[depth] == byte) ++j;
    groups.emplace_back(i, j);
    i = j;
  }
  const uint32_t edge_begin = static_cast<uint32_t>(labels_.size());
  nodes_[index].edge_begin = edge_begin;
  nodes_[index].edge_count = static_cast<uint32_t>(groups.size());
  for (const auto& [a, b] : groups) {
    labels_.push_back(static_cast<uint8_t>(entries[a].first[depth]));
    targets_.push_back(kNone);
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    const uint32_t child = build_node(entries, groups[g].first, groups[g].second, depth + 1);
    targets_[edge_begin + g] = child;
  }
  return index;
}

}  // namespace tideserve::text

// A byte trie over vocabulary strings for greedy longest-prefix matching: WordPiece walks the
// word once instead of hashing every candidate substring.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace tideserve::text {

class WordPieceTrie {
 public:
  // `entries` need not be sorted; values must be >= 0; duplicate keys keep the first value.
  void build(std::vector<std::pair<std::string_view, int32_t>> entries);

  struct Match {
    size_t length = 0;  // bytes matched; 0 when no entry is a prefix of the input
    int32_t value = -1;
  };
  // The longest entry that is a prefix of `text`.
  Match longest_prefix(const char* text, size_t size) const {
    Match best;
    uint32_t node = kRoot;
    for (size_t i = 0; i < size; ++i) {
      const uint8_t byte = static_cast<uint8_t>(text[i]);
      const uint32_t next = node == kRoot ? root_children_[byte] : child(node, byte);
      if (next == kNone) break;
      node = next;
      if (nodes_[node].value >= 0) best = {i + 1, nodes_[node].value};
    }
    return best;
  }

  size_t num_nodes() const { return nodes_.size(); }

 private:
  static constexpr uint32_t kRoot = 0;
  static constexpr uint32_t kNone = 0;  // the root is never a child

  struct Node {
    uint32_t edge_begin = 0;
    uint32_t edge_count = 0;
    int32_t value = -1;
  };

  uint32_t child(uint32_t node, uint8_t byte) const {
    const Node& n = nodes_[node];
    const uint8_t* labels = labels_.data() + n.edge_begin;
    if (n.edge_count <= 8) {
      for (uint32_t i = 0; i < n.edge_count; ++i) {
        if (labels[i] == byte) return targets_[n.edge_begin + i];
      }
      return kNone;
    }
    uint32_t lo = 0, hi = n.edge_count;
    while (lo < hi) {
      const uint32_t mid = (lo + hi) / 2;
      if (labels[mid] < byte) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return (lo < n.edge_count && labels[lo] == byte) ? targets_[n.edge_begin + lo] : kNone;
  }

  uint32_t build_node(const std::vector<std::pair<std::string_view, int32_t>>& entries, size_t lo,
                      size_t hi, size_t depth);

  std::vector<Node> nodes_;
  std::vector<uint8_t> labels_;
  std::vector<uint32_t> targets_;
  uint32_t root_children_[256] = {};
};

}  // namespace tideserve::text

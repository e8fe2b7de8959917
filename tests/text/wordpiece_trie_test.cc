#include "tideserve/text/wordpiece_trie.h"

#include <gtest/gtest.h>

#include <string>

namespace tideserve::text {
namespace {

TEST(WordPieceTrie, FindsTheLongestEntryThatIsAPrefix) {
  WordPieceTrie trie;
  trie.build({{"un", 1}, {"unbe", 2}, {"unbelievable", 3}, {"a", 4}, {"中", 5}, {"中文", 6}});
  const std::string word = "unbelievably";
  auto m = trie.longest_prefix(word.data(), word.size());
  EXPECT_EQ(m.length, 4u);
  EXPECT_EQ(m.value, 2);
  const std::string full = "unbelievable";
  m = trie.longest_prefix(full.data(), full.size());
  EXPECT_EQ(m.length, full.size());
  EXPECT_EQ(m.value, 3);
  const std::string zh = "中文字";
  m = trie.longest_prefix(zh.data(), zh.size());
  EXPECT_EQ(m.length, 6u);
  EXPECT_EQ(m.value, 6);
}

TEST(WordPieceTrie, NoMatchGivesZeroLength) {
  WordPieceTrie trie;
  trie.build({{"abc", 1}});
  const std::string word = "ab";
  auto m = trie.longest_prefix(word.data(), word.size());
  EXPECT_EQ(m.length, 0u);
  EXPECT_EQ(m.value, -1);
  m = trie.longest_prefix("", 0);
  EXPECT_EQ(m.length, 0u);
}

TEST(WordPieceTrie, ManyChildrenUseTheSortedSearch) {
  WordPieceTrie trie;
  std::vector<std::string> keys;
  for (int c = 0; c < 200; ++c) keys.push_back(std::string("x") + static_cast<char>(c + 1));
  std::vector<std::pair<std::string_view, int32_t>> entries;
  for (size_t i = 0; i < keys.size(); ++i) entries.emplace_back(keys[i], static_cast<int32_t>(i));
  trie.build(entries);
  for (size_t i = 0; i < keys.size(); ++i) {
    auto m = trie.longest_prefix(keys[i].data(), keys[i].size());
    ASSERT_EQ(m.value, static_cast<int32_t>(i)) << i;
  }
}

TEST(WordPieceTrie, EmptyTrieMatchesNothing) {
  WordPieceTrie trie;
  trie.build({});
  auto m = trie.longest_prefix("abc", 3);
  EXPECT_EQ(m.length, 0u);
}

}  // namespace
}  // namespace tideserve::text

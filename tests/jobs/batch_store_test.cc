// The batch store (jobs/batch_store.h) against a real redis-server per test: files, a batch's
// lines through the consumer group, exactly-once results under redelivery, finalizing twice,
// cancel and expiry, the backlog limit, trimming that never drops an unacknowledged entry, and
// the queue depth checked against the commands KEDA's redis-streams scaler runs.
#include "tideserve/jobs/batch_store.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "redis_server.h"

namespace tideserve::jobs {
namespace {

using testing::RedisServer;

class BatchStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TIDESERVE_REDIS_SKIP_IF_MISSING();
    std::string error;
    ASSERT_TRUE(server_.start(&error)) << error;
    RedisOptions o;
    o.port = server_.port();
    auto made = BatchStore::connect(o, "t");
    ASSERT_TRUE(made.is_ok()) << made.status().message();
    store_ = std::move(made).value();
  }

  RedisReply run(const std::vector<std::string>& argv) {
    auto r = store_->client().command(argv);
    EXPECT_TRUE(r.is_ok()) << r.status().message();
    return r.is_ok() ? *r : RedisReply();
  }

  NewBatch batch_of(int n, const std::string& queue = "m") {
    NewBatch b;
    b.input_file_id = "file-x";
    b.endpoint = "/v1/embeddings";
    b.completion_window = "24h";
    for (int i = 0; i < n; ++i) {
      b.lines.push_back(
          {"id-" + std::to_string(i), queue, R"({"input":"x)" + std::to_string(i) + R"("})"});
    }
    return b;
  }

  std::vector<LineOutcome> ok_outcomes(const std::vector<JobEntry>& entries) {
    std::vector<LineOutcome> out;
    for (const JobEntry& e : entries) {
      out.push_back({e.queue, e.entry_id, e.line, LineOutcome::Kind::kOk,
                     "{\"line\":" + std::to_string(e.line) + "}"});
    }
    return out;
  }

  // The group's lag and pending from XINFO GROUPS, as KEDA's lagCount reads it.
  std::pair<int64_t, int64_t> xinfo_lag_pending(const std::string& stream) {
    RedisReply groups = run({"XINFO", "GROUPS", stream});
    for (const RedisReply& g : groups.elements()) {
      int64_t lag = -1, pending = -1;
      for (size_t i = 0; i + 1 < g.size(); i += 2) {
        if (g[i].str() == "lag") lag = g[i + 1].integer();
        if (g[i].str() == "pending") pending = g[i + 1].integer();
      }
      return {lag, pending};
    }
    return {-1, -1};
  }

  RedisServer server_;
  std::unique_ptr<BatchStore> store_;
};

TEST_F(BatchStoreTest, FilesRoundTripBinarySafeAndExpire) {
  const std::string content("a\r\nb\0c\n", 7);
  auto f = store_->create_file("batch", "in.jsonl", content, 100);
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  EXPECT_EQ(f->bytes, 7);
  EXPECT_EQ(f->id.rfind("file-", 0), 0u);
  auto got = store_->get_file(f->id);
  ASSERT_TRUE(got.is_ok());
  EXPECT_EQ(got->filename, "in.jsonl");
  EXPECT_EQ(got->purpose, "batch");
  EXPECT_EQ(got->expires_at, got->created_at + 100);
  EXPECT_EQ(*store_->file_content(f->id), content);
  EXPECT_GT(run({"TTL", store_->keys().file(f->id)}).integer(), 90);
  EXPECT_TRUE(store_->delete_file(f->id).is_ok());
  EXPECT_EQ(store_->get_file(f->id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->delete_file(f->id).code(), StatusCode::kNotFound);
}

TEST_F(BatchStoreTest, LinesGoThroughTheGroupAndAreWrittenExactlyOnce) {
  auto b = store_->create_batch(batch_of(5), 3600, 1000);
  ASSERT_TRUE(b.is_ok()) << b.status().message();
  EXPECT_EQ(b->status, "in_progress");
  EXPECT_EQ(b->total, 5);
  const std::string stream = store_->keys().queue("m");

  // What KEDA reads equals the real backlog: 5 lines waiting, none held.
  auto [lag, pending] = xinfo_lag_pending(stream);
  EXPECT_EQ(lag, 5);
  EXPECT_EQ(pending, 0);
  EXPECT_EQ(run({"XLEN", stream}).integer(), 5);
  auto depths = store_->queue_depths();
  ASSERT_TRUE(depths.is_ok());
  ASSERT_EQ(depths->size(), 1u);
  EXPECT_EQ((*depths)[0].depth(), 5);

  auto first = store_->read("a", {"m"}, 3, 100);
  ASSERT_TRUE(first.is_ok()) << first.status().message();
  ASSERT_EQ(first->size(), 3u);
  EXPECT_EQ((*first)[0].batch_id, b->id);
  EXPECT_EQ((*first)[0].custom_id, "id-0");
  EXPECT_EQ((*first)[2].line, 2);
  std::tie(lag, pending) = xinfo_lag_pending(stream);
  EXPECT_EQ(lag, 2);
  EXPECT_EQ(pending, 3);
  EXPECT_EQ(run({"XPENDING", stream, "workers"})[0].integer(), 3);
  depths = store_->queue_depths();
  EXPECT_EQ((*depths)[0].lag, 2);
  EXPECT_EQ((*depths)[0].pending, 3);

  auto done = store_->complete(b->id, ok_outcomes(*first));
  ASSERT_TRUE(done.is_ok()) << done.status().message();
  EXPECT_FALSE(*done);
  // The same lines again (a redelivery after a slow worker): acknowledged, not counted twice.
  done = store_->complete(b->id, ok_outcomes(*first));
  ASSERT_TRUE(done.is_ok());
  EXPECT_FALSE(*done);
  EXPECT_EQ(store_->get_batch(b->id)->completed, 3);

  auto rest = store_->read("b", {"m"}, 10, 100);
  ASSERT_EQ(rest->size(), 2u);
  std::vector<LineOutcome> outcomes = ok_outcomes(*rest);
  outcomes[1].kind = LineOutcome::Kind::kError;
  outcomes[1].json = "{\"error\":4}";
  done = store_->complete(b->id, outcomes);
  ASSERT_TRUE(done.is_ok());
  EXPECT_TRUE(*done);  // the last line: this caller finalizes
  EXPECT_EQ(store_->get_batch(b->id)->status, "finalizing");
  std::tie(lag, pending) = xinfo_lag_pending(stream);
  EXPECT_EQ(lag, 0);
  EXPECT_EQ(pending, 0);

  auto final_status = store_->finalize(b->id, 600);
  ASSERT_TRUE(final_status.is_ok()) << final_status.status().message();
  EXPECT_EQ(*final_status, "completed");
  EXPECT_EQ(*store_->finalize(b->id, 600), "");  // a second finalizer changes nothing
  auto after = store_->get_batch(b->id);
  EXPECT_EQ(after->status, "completed");
  EXPECT_EQ(after->completed, 4);
  EXPECT_EQ(after->failed, 1);
  EXPECT_GT(after->completed_at, 0);
  EXPECT_EQ(*store_->file_content(after->output_file_id),
            "{\"line\":0}\n{\"line\":1}\n{\"line\":2}\n{\"line\":3}\n");
  EXPECT_EQ(*store_->file_content(after->error_file_id), "{\"error\":4}\n");
  EXPECT_EQ(run({"SISMEMBER", store_->keys().active(), b->id}).integer(), 0);
  EXPECT_EQ(run({"EXISTS", store_->keys().results(b->id)}).integer(), 0);
  EXPECT_GT(run({"TTL", store_->keys().batch(b->id)}).integer(), 500);
}

TEST_F(BatchStoreTest, IdleEntriesAreReclaimedWithTheirDeliveryCount) {
  auto b = store_->create_batch(batch_of(2), 3600, 1000);
  ASSERT_TRUE(b.is_ok());
  auto held = store_->read("dead-worker", {"m"}, 10, 100);
  ASSERT_EQ(held->size(), 2u);
  auto none = store_->reclaim("b", "m", 60000, 10);
  ASSERT_TRUE(none.is_ok());
  EXPECT_TRUE(none->empty());  // not idle long enough
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  auto got = store_->reclaim("b", "m", 20, 10);
  ASSERT_TRUE(got.is_ok()) << got.status().message();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].deliveries, 2);
  EXPECT_EQ((*got)[0].custom_id, "id-0");
  // A heartbeat keeps what b holds from being reclaimed again.
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  std::vector<const JobEntry*> mine = {&(*got)[0], &(*got)[1]};
  ASSERT_TRUE(store_->heartbeat("b", mine).is_ok());
  auto again = store_->reclaim("c", "m", 25, 10);
  ASSERT_TRUE(again.is_ok());
  EXPECT_TRUE(again->empty());
}

TEST_F(BatchStoreTest, AConsumerLeavesTheGroupOnlyWhenItHoldsNothing) {
  auto b = store_->create_batch(batch_of(2), 3600, 1000);
  auto held = store_->read("a", {"m"}, 1, 100);
  ASSERT_EQ(held->size(), 1u);
  auto left = store_->leave_group("a", "m");
  ASSERT_TRUE(left.is_ok()) << left.status().message();
  EXPECT_FALSE(*left);  // it holds a line: leaving would drop it
  EXPECT_EQ(run({"XPENDING", store_->keys().queue("m"), "workers"})[0].integer(), 1);
  ASSERT_TRUE(store_->complete(b->id, ok_outcomes(*held)).is_ok());
  left = store_->leave_group("a", "m");
  ASSERT_TRUE(left.is_ok());
  EXPECT_TRUE(*left);
  EXPECT_EQ(run({"XINFO", "CONSUMERS", store_->keys().queue("m"), "workers"}).size(), 0u);
  EXPECT_EQ(xinfo_lag_pending(store_->keys().queue("m")).first, 1);  // the other line waits
}

TEST_F(BatchStoreTest, DeadLettersGoToTheErrorFileAndTheDeadStream) {
  auto b = store_->create_batch(batch_of(1), 3600, 1000);
  auto held = store_->read("a", {"m"}, 10, 100);
  ASSERT_EQ(held->size(), 1u);
  std::vector<LineOutcome> dead = {
      {"m", (*held)[0].entry_id, 0, LineOutcome::Kind::kDead, "{\"dead\":true}"}};
  auto done = store_->complete(b->id, dead);
  ASSERT_TRUE(done.is_ok()) << done.status().message();
  EXPECT_TRUE(*done);
  EXPECT_EQ(run({"XLEN", store_->keys().dead("m")}).integer(), 1);
  EXPECT_EQ(*store_->finalize(b->id, 60), "completed");
  auto after = store_->get_batch(b->id);
  EXPECT_EQ(after->failed, 1);
  EXPECT_TRUE(after->output_file_id.empty());
  EXPECT_EQ(*store_->file_content(after->error_file_id), "{\"dead\":true}\n");
}

TEST_F(BatchStoreTest, BigOutputsAreWrittenInPartsAndRacingFinalizersAgree) {
  const int n = 2500;  // 2500 results of ~3 KB: two parts of the output file
  auto b = store_->create_batch(batch_of(n), 3600, 100000);
  ASSERT_TRUE(b.is_ok());
  std::string expected;
  for (int done = 0; done < n;) {
    auto got = store_->read("a", {"m"}, 500, 100);
    ASSERT_TRUE(got.is_ok());
    std::vector<LineOutcome> outcomes;
    for (const JobEntry& e : *got) {
      outcomes.push_back(
          {e.queue, e.entry_id, e.line, LineOutcome::Kind::kOk,
           "{\"line\":" + std::to_string(e.line) + ",\"pad\":\"" + std::string(3000, 'x') + "\"}"});
    }
    ASSERT_TRUE(store_->complete(b->id, outcomes).is_ok());
    done += static_cast<int>(got->size());
  }
  for (int i = 0; i < n; ++i) {
    expected += "{\"line\":" + std::to_string(i) + ",\"pad\":\"" + std::string(3000, 'x') + "\"}\n";
  }
  RedisOptions o;
  o.port = server_.port();
  auto other = BatchStore::connect(o, "t");
  ASSERT_TRUE(other.is_ok());
  Result<std::string> mine = std::string(), theirs = std::string();
  std::thread racer([&] { theirs = (*other)->finalize(b->id, 600); });
  mine = store_->finalize(b->id, 600);
  racer.join();
  ASSERT_TRUE(mine.is_ok()) << mine.status().message();
  ASSERT_TRUE(theirs.is_ok()) << theirs.status().message();
  EXPECT_EQ((*mine == "completed") + (*theirs == "completed"), 1) << *mine << " / " << *theirs;
  auto after = store_->get_batch(b->id);
  EXPECT_EQ(after->status, "completed");
  EXPECT_EQ(run({"LLEN", store_->keys().parts(after->output_file_id)}).integer(), 2);
  const std::string content = *store_->file_content(after->output_file_id);
  EXPECT_EQ(content.size(), expected.size());
  EXPECT_TRUE(content == expected);
  EXPECT_EQ(store_->get_file(after->output_file_id)->bytes, static_cast<int64_t>(expected.size()));
  EXPECT_EQ(run({"KEYS", "t:file:*:parts:*"}).size(), 0u);  // the loser's parts are gone
}

TEST_F(BatchStoreTest, CancelKeepsWhatWasDoneAndDropsLaterResults) {
  auto b = store_->create_batch(batch_of(4), 3600, 1000);
  auto first = store_->read("a", {"m"}, 1, 100);
  ASSERT_TRUE(store_->complete(b->id, ok_outcomes(*first)).is_ok());
  auto second = store_->read("a", {"m"}, 1, 100);
  auto cancelled = store_->cancel_batch(b->id);
  ASSERT_TRUE(cancelled.is_ok()) << cancelled.status().message();
  EXPECT_EQ(cancelled->status, "cancelling");
  EXPECT_GT(cancelled->cancelling_at, 0);
  // A worker finishing a line after the cancel: acknowledged, not written.
  auto late = store_->complete(b->id, ok_outcomes(*second));
  ASSERT_TRUE(late.is_ok());
  EXPECT_FALSE(*late);
  EXPECT_EQ(xinfo_lag_pending(store_->keys().queue("m")).second, 0);
  auto statuses = store_->tick(60);
  ASSERT_TRUE(statuses.is_ok()) << statuses.status().message();
  EXPECT_EQ(*statuses, std::vector<std::string>{"cancelled"});
  auto after = store_->get_batch(b->id);
  EXPECT_EQ(after->status, "cancelled");
  EXPECT_EQ(after->completed, 1);
  EXPECT_EQ(*store_->file_content(after->output_file_id), "{\"line\":0}\n");
  EXPECT_EQ(store_->cancel_batch(b->id)->status, "cancelled");  // cancelling again: as it is
  auto other = store_->create_batch(batch_of(1, "n"), 3600, 1000);
  auto line = store_->read("a", {"n"}, 1, 100);
  ASSERT_TRUE(store_->complete(other->id, ok_outcomes(*line)).is_ok());
  ASSERT_TRUE(store_->finalize(other->id, 60).is_ok());
  EXPECT_EQ(store_->cancel_batch(other->id).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->cancel_batch("batch_nope").status().code(), StatusCode::kNotFound);
}

TEST_F(BatchStoreTest, ExpiredBatchesGetBatchExpiredErrorsForUnfinishedLines) {
  NewBatch nb = batch_of(3);
  nb.lines[2].custom_id = "quote\"d";
  auto b = store_->create_batch(nb, 0, 1000);  // expires at once
  auto first = store_->read("a", {"m"}, 1, 100);
  ASSERT_TRUE(store_->complete(b->id, ok_outcomes(*first)).is_ok());
  auto statuses = store_->tick(60);
  ASSERT_TRUE(statuses.is_ok()) << statuses.status().message();
  EXPECT_EQ(*statuses, std::vector<std::string>{"expired"});
  auto after = store_->get_batch(b->id);
  EXPECT_EQ(after->status, "expired");
  EXPECT_GT(after->expired_at, 0);
  EXPECT_EQ(after->completed, 1);
  EXPECT_EQ(after->failed, 2);  // the expired lines are in the error file: counted as failed
  const std::string errors = *store_->file_content(after->error_file_id);
  EXPECT_NE(errors.find(R"("custom_id":"id-1","response":null,"error":{"code":"batch_expired")"),
            std::string::npos)
      << errors;
  EXPECT_NE(errors.find(R"("custom_id":"quote\"d")"), std::string::npos) << errors;
  EXPECT_EQ(std::count(errors.begin(), errors.end(), '\n'), 2);
  // The lines still queued are acknowledged unread by whichever worker meets them.
  auto statuses_now = store_->batch_statuses({b->id});
  EXPECT_EQ((*statuses_now)[b->id], "expired");
}

TEST_F(BatchStoreTest, FailedValidationStoresNoLines) {
  NewBatch nb = batch_of(2);
  nb.lines.clear();
  nb.errors_json = R"({"object":"list","data":[]})";
  auto b = store_->create_batch(nb, 60, 1000);
  ASSERT_TRUE(b.is_ok());
  EXPECT_EQ(b->status, "failed");
  EXPECT_GT(b->failed_at, 0);
  EXPECT_EQ(run({"EXISTS", store_->keys().queue("m")}).integer(), 0);
  EXPECT_EQ(store_->get_batch(b->id)->errors_json, nb.errors_json);
}

TEST_F(BatchStoreTest, BacklogLimitRefusesWholeBatches) {
  ASSERT_TRUE(store_->create_batch(batch_of(6), 3600, 10).is_ok());
  auto refused = store_->create_batch(batch_of(5), 3600, 10);
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(run({"XLEN", store_->keys().queue("m")}).integer(), 6);  // nothing of it queued
  EXPECT_TRUE(store_->create_batch(batch_of(4), 3600, 10).is_ok());
}

TEST_F(BatchStoreTest, ListingIsNewestFirstWithACursor) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(store_->create_batch(batch_of(1), 3600, 1000)->id);
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // distinct created_at
  }
  bool more = false;
  auto page = store_->list_batches("", 2, more);
  ASSERT_TRUE(page.is_ok());
  ASSERT_EQ(page->size(), 2u);
  EXPECT_TRUE(more);
  EXPECT_EQ((*page)[0].id, ids[2]);
  EXPECT_EQ((*page)[1].id, ids[1]);
  auto next = store_->list_batches((*page)[1].id, 2, more);
  ASSERT_EQ(next->size(), 1u);
  EXPECT_FALSE(more);
  EXPECT_EQ((*next)[0].id, ids[0]);
  // A batch whose hash expired drops out of the listing.
  run({"DEL", store_->keys().batch(ids[1])});
  auto all = store_->list_batches("", 10, more);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ(run({"ZCARD", store_->keys().index()}).integer(), 2);
}

TEST_F(BatchStoreTest, TrimNeverDropsAnUnacknowledgedEntry) {
  auto b = store_->create_batch(batch_of(5), 3600, 1000);
  const std::string stream = store_->keys().queue("m");
  auto held = store_->read("a", {"m"}, 3, 100);
  ASSERT_EQ(held->size(), 3u);
  // Lines 1 and 2 done, line 0 still held: nothing may go, line 0 is the oldest unacked.
  std::vector<JobEntry> later(held->begin() + 1, held->end());
  ASSERT_TRUE(store_->complete(b->id, ok_outcomes(later)).is_ok());
  ASSERT_TRUE(store_->trim("m").is_ok());
  EXPECT_EQ(run({"XLEN", stream}).integer(), 5);
  std::vector<JobEntry> oldest(held->begin(), held->begin() + 1);
  ASSERT_TRUE(store_->complete(b->id, ok_outcomes(oldest)).is_ok());
  ASSERT_TRUE(store_->trim("m").is_ok());
  EXPECT_EQ(run({"XLEN", stream}).integer(), 2);  // the two never delivered stay
  auto [lag, pending] = xinfo_lag_pending(stream);
  EXPECT_EQ(lag, 2);  // trimming keeps the lag exact (no tombstones)
  EXPECT_EQ(pending, 0);
  auto rest = store_->read("a", {"m"}, 10, 100);
  ASSERT_EQ(rest->size(), 2u);
  EXPECT_EQ((*rest)[0].line, 3);
}

TEST_F(BatchStoreTest, RedisDownIsUnavailableAndNoBatchIsStored) {
  server_.kill9();
  auto b = store_->create_batch(batch_of(2), 3600, 1000);
  EXPECT_EQ(b.status().code(), StatusCode::kUnavailable);
  ASSERT_TRUE(server_.restart());
  ASSERT_TRUE(store_->ensure_connected().is_ok());
  EXPECT_EQ(run({"EXISTS", store_->keys().queue("m")}).integer(), 0);
  EXPECT_TRUE(store_->create_batch(batch_of(2), 3600, 1000).is_ok());
}

TEST(EntryTimeTest, ReadsTheMillisecondsOfAnEntryId) {
  EXPECT_EQ(entry_time_ms("1712345678901-3"), 1712345678901);
  EXPECT_EQ(entry_time_ms("garbage"), 0);
  EXPECT_EQ(random_id("batch_").size(), 6u + 24u);
  EXPECT_NE(random_id("x"), random_id("x"));
}

}  // namespace
}  // namespace tideserve::jobs

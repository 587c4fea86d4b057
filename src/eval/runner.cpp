#include "eval/runner.h"

#include <mutex>
#include <thread>

#include "core/progress.h"

namespace v4::eval {

std::vector<Item> expand_items(const std::vector<Item>& items, const std::vector<std::string>& modes, long limit) {
  std::vector<Item> out;
  std::vector<std::string> ms = modes.empty() ? std::vector<std::string>{""} : modes;
  const size_t n = limit >= 0 ? std::min(items.size(), static_cast<size_t>(limit)) : items.size();
  for (const auto& mode : ms)
    for (size_t i = 0; i < n; ++i) {
      Item it = items[i];
      if (ms.size() > 1) it.id += "@" + mode;
      if (!mode.empty()) it.meta["reasoning"] = mode;
      out.push_back(std::move(it));
    }
  return out;
}

RunReport run_eval(const Suite& suite, const Endpoint& ep, ResultsWriter& out, const RunOptions& opt) {
  struct Unit {
    const Item* item;
    int sample;
  };
  const std::vector<Item> items = expand_items(suite.items(), opt.reasoning, opt.limit);
  std::vector<Unit> todo;
  RunReport rep;
  for (const auto& it : items)
    for (int s = 0; s < opt.samples; ++s) {
      ++rep.total;
      Outcome probe;
      probe.id = it.id;
      probe.sample = s;
      if (out.done(probe.key())) ++rep.skipped;
      else todo.push_back({&it, s});
    }
  Progress bar("eval " + suite.name(), todo.size(), opt.quiet);
  std::mutex mu;
  size_t next = 0, finished = 0;
  int consecutive = 0;
  bool abort = false;
  auto worker = [&] {
    for (;;) {
      Unit u;
      {
        std::lock_guard<std::mutex> lk(mu);
        if (abort || next >= todo.size()) return;
        if (opt.stop && opt.stop->load()) {
          rep.interrupted = true;
          return;
        }
        u = todo[next++];
      }
      TurnSettings ts;
      ts.reasoning = u.item->meta.value("reasoning", std::string());
      ts.max_tokens = opt.max_tokens;
      ts.temperature = opt.temperature;
      ts.seed = static_cast<long>(opt.seed) + u.sample;
      Outcome o = suite.run(*u.item, u.sample, ep, ts);
      std::lock_guard<std::mutex> lk(mu);
      if (o.error_kind == "transport") {
        ++rep.transport_errors;
        rep.last_error = o.error;
        if (++consecutive >= opt.max_consecutive_transport_errors) {
          rep.endpoint_failed = abort = true;
        }
        // Not written: the item is redone when the run is resumed.
        continue;
      }
      consecutive = 0;
      out.append(o);
      ++rep.ran;
      if (o.passed) ++rep.passed;
      bar.update(++finished);
    }
  };
  const int nthreads = std::max(1, std::min<int>(opt.concurrency, static_cast<int>(std::max<size_t>(todo.size(), 1))));
  std::vector<std::thread> th;
  for (int i = 0; i < nthreads; ++i) th.emplace_back(worker);
  for (auto& t : th) t.join();
  bar.finish();
  return rep;
}

}  // namespace v4::eval

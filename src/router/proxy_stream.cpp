// An upstream's bytes on their way to the client: passthrough of same-dialect streams (frames
// forwarded as they came, only the finish/usage/error parsed), the SAX scan of Chat Completions
// deltas, the protocol reader and writer for everything else.
#include "router/proxy_impl.h"

namespace v4::router {

void Proxy::Impl::on_piece(const std::shared_ptr<Exchange>& ex, std::string_view piece) {
  if (ex->up_status != 200) {
    if (ex->up_error_body.size() < 65536) ex->up_error_body.append(piece.substr(0, 65536 - ex->up_error_body.size()));
    return;
  }
  if (ex->garbage) return;
  arm_idle(ex, ex->up->cfg.timeouts.first_token_s);
  if (ex->passthrough) return pt_piece(ex, piece);
  try {
    for (auto& f : ex->decoder.feed(piece)) read_frame(ex, f);
  } catch (const std::exception& e) {
    ex->garbage = true;
    ex->garbage_msg = e.what();
    ex->handle->cancel();
  }
  flush_out(ex);
}

// One upstream frame into events: a plain Chat Completions delta by the SAX scan, anything else
// (and the first frame, which starts the reader) by the protocol layer's reader.
void Proxy::Impl::read_frame(const std::shared_ptr<Exchange>& ex, const protocol::SseFrame& f) {
  if (ex->lean_on) {
    if (f.event.empty() && ex->lean.read(f.data, ex->lean_events)) {
      ex->lean_frames.push_back(f.data);
      for (auto& ev : ex->lean_events) on_event(ex, std::move(ev));
      ex->lean_events.clear();
      return;
    }
    // Not the plain shape: the protocol reader takes over from the start of the stream (only
    // the accumulated answer has seen the events: a non-streaming client got nothing yet).
    ex->lean_on = false;
    ex->acc = protocol::ResponseAccumulator();
    ex->reader = protocol::make_stream_reader(Dialect::ChatCompletions);
    ex->reader_started = true;
    std::vector<std::string> seen = std::move(ex->lean_frames);
    ex->lean_frames.clear();
    for (auto& d : seen)
      for (auto& ev : ex->reader->read(protocol::SseFrame{"", d})) on_event(ex, std::move(ev));
  }
  if (ex->fast_chat && ex->reader_started && f.event.empty() && !ex->reader->complete() && fastchat::scan_plain_delta(f.data, ex->delta)) {
    if (!ex->delta.reasoning.empty()) on_event(ex, protocol::StreamEvent::reasoning(std::move(ex->delta.reasoning)));
    if (!ex->delta.content.empty()) on_event(ex, protocol::StreamEvent::content(std::move(ex->delta.content)));
    return;
  }
  ex->reader_started = true;
  for (auto& ev : ex->reader->read(f)) on_event(ex, std::move(ev));
}

void Proxy::Impl::flush_out(const std::shared_ptr<Exchange>& ex) {
  if (ex->outbuf.empty() || !ex->stream || ex->stream->closed()) {
    ex->outbuf.clear();
    return observe_ttft(*ex);
  }
  // A client that reads too slowly overruns the stream's buffer cap: the server closes it and
  // write() says so; stop the upstream then (memory per stream stays bounded).
  if (!ex->stream->append(ex->outbuf)) {
    ex->client_gone = true;
    if (ex->handle) ex->handle->cancel();
  }
  ex->outbuf.clear();
  observe_ttft(*ex);
}

void Proxy::Impl::pt_piece(const std::shared_ptr<Exchange>& ex, std::string_view piece) {
  pt_frames(ex, piece);
  // One write per upstream read, not one per frame: fewer wake-ups of the client's I/O thread.
  // append, not write(std::move(outbuf)): outbuf keeps its capacity, no allocation per piece.
  if (!ex->outbuf.empty()) pt_write(ex, ex->outbuf);
  ex->outbuf.clear();
}

// Splits the upstream's bytes into events without decoding them: a plain `data:` event is
// forwarded as the bytes that came (byte-exact), the rest goes through the SSE decoder.
void Proxy::Impl::pt_frames(const std::shared_ptr<Exchange>& ex, std::string_view piece) {
  if (ex->pt_raw && piece.find('\r') != std::string_view::npos) {  // CR line ends: the decoder from here on
    ex->pt_raw = false;
    std::string rest = std::move(ex->pt_buf);
    ex->pt_buf.clear();
    if (!rest.empty()) pt_decoded(ex, rest);
  }
  if (!ex->pt_raw) return pt_decoded(ex, piece);
  std::string_view view = piece;
  bool buffered = !ex->pt_buf.empty();
  if (buffered) {
    ex->pt_buf.append(piece);
    view = ex->pt_buf;
  }
  size_t pos = 0;
  while (!ex->garbage) {
    std::string_view data;
    bool plain = false;
    size_t n = fastchat::next_event(view.substr(pos), data, plain);
    if (n == 0) break;
    if (plain) pt_frame(ex, view.substr(pos, n), data);
    else pt_decoded(ex, view.substr(pos, n));
    pos += n;
  }
  if (buffered) ex->pt_buf.erase(0, pos);
  else ex->pt_buf.assign(view.substr(pos));
}

void Proxy::Impl::pt_decoded(const std::shared_ptr<Exchange>& ex, std::string_view bytes) {
  for (auto& f : ex->decoder.feed(bytes)) {
    if (ex->garbage) return;
    std::string w = f.wire();
    pt_frame(ex, w, f.data);
  }
}

// One event of a passed-through stream: `raw` its bytes, `data` its payload. Only the frames
// that may carry the finish, the usage or an error are parsed.
void Proxy::Impl::pt_frame(const std::shared_ptr<Exchange>& ex, std::string_view raw, std::string_view data) {
  if (ex->saw_done) return;
  if (data == "[DONE]") {
    ex->saw_done = true;
    ex->tail.emplace_back(raw);
    return;
  }
  if (fastchat::may_end(data)) {
    fastchat::End end;
    std::string stripped;
    if (fastchat::scan_end(data, end) &&
        !(end.usage && end.finish && !ex->req.include_usage && !fastchat::strip_usage(data, stripped))) {
      if (end.usage) {
        ex->pt_usage = end.counts;
        if (!ex->req.include_usage) {  // the router asked for it; the client did not
          if (!end.finish) return;
          ex->tail.push_back("data: " + stripped + "\n\n");
          return;
        }
      }
      if (end.finish || end.usage) {  // the end: held until the ledger has the request
        ex->tail.emplace_back(raw);
        return;
      }
      return pt_token_frame(ex, raw, data);  // only looked like an end
    }
    // An error, an unusual shape, or usage to strip from the finish chunk: the full parse.
    auto j = ojson::parse(data, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      ex->garbage = true;
      ex->garbage_msg = "a stream chunk is not JSON";
      ex->handle->cancel();
      return;
    }
    if (j.contains("error")) {
      ex->pt_error = true;
      ex->pt_error_msg = upstream_error_message(std::string(data));
      return;
    }
    bool is_finish = false;
    if (j.contains("choices") && j["choices"].is_array())
      for (auto& c : j["choices"]) is_finish = is_finish || (c.is_object() && c.contains("finish_reason") && c["finish_reason"].is_string());
    bool has_usage = j.contains("usage") && j["usage"].is_object();
    if (has_usage) {
      ex->pt_usage = protocol::chat::parse_usage(j["usage"]);
      if (!ex->req.include_usage) {  // the router asked for it; the client did not
        if (!is_finish) return;
        j.erase("usage");
        ex->tail.push_back(protocol::SseFrame{"", protocol::wire(j)}.wire());
        return;
      }
    }
    if (is_finish || has_usage) {  // the end: held until the ledger has the request
      ex->tail.emplace_back(raw);
      return;
    }
    // Only looked like an end (e.g. a token that spells "error"): an ordinary frame.
  }
  pt_token_frame(ex, raw, data);
}

void Proxy::Impl::pt_token_frame(const std::shared_ptr<Exchange>& ex, std::string_view raw, std::string_view data) {
  if (!ex->committed) {
    ex->held.emplace_back(raw);
    if (!fastchat::carries_token(data)) return;
    ex->got_token = true;
    commit_stream(ex);
    for (auto& h : ex->held) ex->outbuf += h;
    ex->held.clear();
    return;
  }
  ex->outbuf.append(raw);
}

void Proxy::Impl::pt_write(const std::shared_ptr<Exchange>& ex, std::string_view bytes) {
  if (!ex->stream || ex->stream->closed()) return observe_ttft(*ex);
  if (!ex->stream->append(bytes)) {
    ex->client_gone = true;
    if (ex->handle) ex->handle->cancel();
  }
  observe_ttft(*ex);
}

bool Proxy::Impl::is_token(const protocol::StreamEvent& e) {
  using K = protocol::StreamEvent::Kind;
  return e.kind == K::TextDelta || e.kind == K::ReasoningDelta || e.kind == K::ToolCallStart;
}

void Proxy::Impl::on_event(const std::shared_ptr<Exchange>& ex, protocol::StreamEvent ev) {
  using K = protocol::StreamEvent::Kind;
  ex->acc.add(ev);
  if (is_token(ev) && !ex->got_token) ex->got_token = true;
  bool pass_through = ex->req.stream && ex->route->stream == StreamMode::FirstByte && !ex->client_gone;
  if (!pass_through || ev.kind == K::Finish || ev.kind == K::Error) {
    // Held: the whole answer (buffer mode, non-streaming clients), or the end of a passed-through
    // stream, which goes out only after the ledger commit.
    if (ex->req.stream && (!pass_through || ev.kind == K::Finish)) ex->events.push_back(std::move(ev));
    return;
  }
  if (!ex->committed) {
    ex->events.push_back(std::move(ev));
    if (!is_token(ex->events.back())) return;
    commit_stream(ex);
    for (auto& e : ex->events) write_event(ex, e);
    ex->events.clear();
    return;
  }
  write_event(ex, ev);
}

// Starts the client's stream (status and headers go out).
void Proxy::Impl::commit_stream(const std::shared_ptr<Exchange>& ex) {
  ex->committed = true;
  ex->ttft_ms = since_ms(ex->t0);
  auto& r = *ex->reply;
  r.set_header("x-v4host-request-id", ex->rec.id);
  r.set_header("x-v4host-route", ex->route->name);
  r.set_header("x-v4host-upstream", ex->up->cfg.name);
  r.set_header("x-v4host-hops", std::to_string(ex->rec.hops.size() + 1));
  r.set_header("Cache-Control", "no-cache");
  // The header leaves with the first frames, written at once (flush_out / pt_write), rather than
  // after another pass of the loop.
  ex->stream = r.start_stream_on_write("text/event-stream");
  // A passed-through stream forwards the upstream's frames: its writer (a copy of the request)
  // is made only if it has to end the stream with an error event (finish_broken).
  if (!ex->passthrough) ex->writer = make_writer(*ex);
  // The TTFT histogram is updated after the first frames are written (observe_ttft), not
  // before: a mutex and a label key less on the first token's way out.
  ex->ttft_unobserved = true;
}

std::unique_ptr<protocol::StreamWriter> Proxy::Impl::make_writer(const Exchange& x) {
  const Exchange* ex = &x;
  protocol::StreamMeta meta;
  meta.id = (ex->dialect == Dialect::AnthropicMessages ? "msg_" : ex->dialect == Dialect::Responses ? "resp_" : ex->dialect == Dialect::Completions ? "cmpl-" : "chatcmpl-") + ex->rec.id;
  meta.model = ex->client_model;
  meta.created = static_cast<int64_t>(ex->rec.ts);
  meta.include_usage = ex->req.include_usage;
  meta.request = ex->req;
  return protocol::make_stream_writer(ex->dialect, std::move(meta));
}

void Proxy::Impl::observe_ttft(Exchange& ex) {
  if (!ex.ttft_unobserved) return;
  ex.ttft_unobserved = false;
  metrics.observe("v4host_route_time_to_first_token_seconds", {{"route", ex.route->name}}, ex.ttft_ms / 1000);
}

// Appends the event's frames to the pending output (flush_out writes it).
void Proxy::Impl::write_event(const std::shared_ptr<Exchange>& ex, const protocol::StreamEvent& e) {
  if (!ex->stream || ex->stream->closed()) return;
  for (auto& f : ex->writer->write(e)) ex->outbuf += f.wire();
}

}  // namespace v4::router

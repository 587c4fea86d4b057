// Incremental Server-Sent Events parser (WHATWG HTML "event stream interpretation").
//
// feed() accepts the stream in arbitrary pieces (a line, a field name or a CR/LF pair may be split
// across calls) and calls the callback once per dispatched event, in order. Handles:
// - line ends CRLF, LF or CR (a CR at the end of one piece followed by LF at the start of the next
//   is one line end);
// - `event:`, `data:`, `id:`, `retry:` fields, with one optional space after the colon stripped;
//   a line without a colon is a field with an empty value; unknown fields are ignored;
// - multi-line data (data lines joined with "\n");
// - comments (lines starting with ':', e.g. keep-alives) — counted, never dispatched;
// - a leading UTF-8 BOM;
// - an event is dispatched at a blank line; one with no data line is dropped (as browsers do);
//   an unterminated event at the end of the stream is dropped by finish() (spec), but reported by
//   pending() so callers can treat a truncated stream as an error.
// The id persists across events (Last-Event-ID semantics); an id containing NUL is ignored.
//
// The event handed to the callback is a member reused for every event (valid only during the
// call): on a stream of thousands of small events per second, no allocation happens per event
// once the buffers have grown to the event size.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace v4::net {

struct SseEvent {
  std::string event = "message";  // the `event:` field, "message" when absent
  std::string data;               // data lines joined with '\n' (no trailing newline)
  std::string id;                 // last event id seen so far
  std::optional<int64_t> retry;   // the `retry:` value in ms, if this event carried one
};

class SseParser {
 public:
  using Callback = std::function<void(const SseEvent&)>;
  explicit SseParser(Callback cb) : cb_(std::move(cb)) {}

  void feed(std::string_view piece);
  // End of stream: a CR-terminated last line is completed; a partial event is discarded.
  void finish();

  // Comment lines seen (keep-alives).
  uint64_t comments() const { return comments_; }
  // Events dispatched.
  uint64_t events() const { return events_; }
  // True when bytes of an undispatched event (or an unterminated line) are buffered.
  bool pending() const { return !line_.empty() || has_fields_; }
  // Bytes held for an unterminated line (bounded by the caller's trust in the server).
  size_t buffered() const { return line_.size(); }

 private:
  void line(std::string_view l);
  void dispatch();

  Callback cb_;
  std::string line_;
  bool after_cr_ = false, bom_checked_ = false, has_fields_ = false, has_data_ = false;
  std::string event_, data_, last_id_;
  std::optional<int64_t> retry_;
  SseEvent ev_;  // reused for each dispatch (its buffers swap with event_ / data_)
  uint64_t comments_ = 0, events_ = 0;
};

}  // namespace v4::net

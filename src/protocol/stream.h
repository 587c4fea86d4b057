// Streaming in any dialect: a writer turns neutral StreamEvents into that dialect's SSE frames
// (the server's side, and the router's when it re-emits an upstream stream); a reader turns an
// upstream's SSE frames, one at a time, back into StreamEvents.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "protocol/types.h"

namespace v4::protocol {

// What a writer needs besides the events: the ids and echoed request fields.
struct StreamMeta {
  std::string id, model;
  int64_t created = 0;
  bool include_usage = false;   // chat: stream_options.include_usage
  Request request;              // Responses: the object echoes instructions, tools, store, …; Anthropic: nothing
  std::string reasoning_item_id, message_item_id;  // Responses item ids (generated when empty)
  // Responses with include ["reasoning.encrypted_content"]: reasoning text -> opaque blob
  // (the server's integrity-checked seal); unset = no encrypted_content.
  std::function<std::string(const std::string&)> seal;
};

class StreamWriter {
 public:
  virtual ~StreamWriter() = default;
  // Frames for one event. After Finish or Error the stream is complete (further events: none).
  virtual std::vector<SseFrame> write(const StreamEvent& e) = 0;
  // A stream that ends without Finish/Error (e.g. the upstream broke off): frames that close it
  // in the dialect's error form. Empty if already complete.
  // (Every dialect's error form is what write() gives for a failure event.)
  virtual std::vector<SseFrame> abort(const std::string& message) {
    if (complete()) return {};
    return write(StreamEvent::failed(message));
  }
  virtual bool complete() const = 0;
};

class StreamReader {
 public:
  virtual ~StreamReader() = default;
  // Events for one upstream frame; throws ProtocolError (status 502) on a frame that does not
  // fit the dialect.
  virtual std::vector<StreamEvent> read(const SseFrame& f) = 0;
  // The upstream ended the stream: events still owed (a Finish held back for trailing usage).
  virtual std::vector<StreamEvent> end() = 0;
  virtual bool complete() const = 0;  // Finish or Error seen
};

std::unique_ptr<StreamWriter> make_stream_writer(Dialect d, StreamMeta meta);
std::unique_ptr<StreamReader> make_stream_reader(Dialect d);

}  // namespace v4::protocol

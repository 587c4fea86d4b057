// The router's cheap path for OpenAI Chat Completions traffic, the common case in front of
// OpenAI-compatible engines: most frames of an upstream stream are plain deltas (one choice, some
// text), and building a JSON document for each, then a second one for the answer, was most of the
// router's CPU per request. Here a plain delta is read with a SAX scan (no document, no
// allocation beyond the text), frames are split and classified on their raw bytes, and a
// non-streaming answer without tool calls is written straight to a string. Anything not plain
// (finish, usage, errors, tool calls, logprobs, several choices) is left to the full protocol
// reader by the caller, so the two paths give the same events and the same bytes.
#pragma once
#include <string>
#include <optional>
#include <string_view>
#include <vector>

#include "protocol/types.h"

namespace v4::router::fastchat {

// A chat chunk's data whose only choice (index 0) carries a delta of role / content / reasoning
// text and nothing that ends or changes the answer. `content` and `reasoning` receive the
// (unescaped) text; false — with nothing appended — for anything else, which the caller gives
// to protocol's chat StreamReader instead.
struct Delta {
  std::string content, reasoning;
  void clear() {
    content.clear();
    reasoning.clear();
  }
};
bool scan_plain_delta(std::string_view data, Delta& out);

// A reader of a whole Chat Completions stream of the plain shape (deltas of text and reasoning, a
// finish, usage, [DONE]) that gives the same events as protocol's chat StreamReader without
// building a JSON document per frame. read() returns false — having appended nothing — at the
// first frame it does not handle (an error, tool calls, logprobs, several choices, bad JSON): the
// caller then replays the stream so far into the protocol reader and continues with that.
class LeanReader {
 public:
  bool read(std::string_view data, std::vector<protocol::StreamEvent>& out);
  void end(std::vector<protocol::StreamEvent>& out);  // the stream is over ([DONE] or the body ended)
  bool complete() const { return done_; }

 private:
  bool started_ = false, done_ = false;
  std::optional<protocol::StreamEvent> finish_;
  protocol::Usage pending_usage_;
};

// Whether a chunk's raw data may carry the finish, the usage or an error (a cheap byte test,
// true when in doubt): such frames are parsed in full.
bool may_end(std::string_view data);

// A chunk of the plain shape (as the lean reader takes: no error, tool calls, logprobs, several
// choices): whether it carries the finish and the usage, and the usage counts. False for anything
// else (the caller parses it in full).
struct End {
  bool finish = false, usage = false;
  protocol::Usage counts;
};
bool scan_end(std::string_view data, End& out);

// The chunk without its top-level "usage" member, every other byte as it came; false if there is
// none or the text is not a JSON object.
bool strip_usage(std::string_view data, std::string& out);

// Whether a chunk carries a token (text, reasoning or a tool call), not only the role.
bool carries_token(std::string_view data);

// The Chat Completions body for `r`, byte-identical to wire(protocol::emit_response(
// ChatCompletions, r, req)), when `r` has no tool calls, no tool-call failures and no logprobs;
// false otherwise (the caller then uses the protocol layer).
bool emit_simple_response(const protocol::Response& r, std::string& out);

// One SSE event at the front of `buf` ("data: …\n\n"), as raw bytes: its length including the
// blank line, or 0 if no complete event is there yet. `data` is the payload of a single-line
// data event; `plain` is false for anything else (comments, event: lines, several data lines,
// CR line ends), which the caller hands to the full SSE decoder.
size_t next_event(std::string_view buf, std::string_view& data, bool& plain);

}  // namespace v4::router::fastchat

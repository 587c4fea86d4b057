#include "text/dsml_parser.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "text/py_json.h"
#include "text/special_tokens.h"
#include "text/utf8.h"

namespace v4::text {

using J = nlohmann::ordered_json;

namespace {

const std::string kEos(tokens::kEos), kBos(tokens::kBos), kThinkStart(tokens::kThinkStart),
    kThinkEnd(tokens::kThinkEnd);
const std::string kMarks[] = {std::string(tokens::kDsml), "|DSML|"};

struct Found {
  size_t pos = std::string::npos;
  size_t which = 0;
};

Found find_first(std::string_view buf, const std::vector<std::string>& terms) {
  Found f;
  for (size_t i = 0; i < terms.size(); ++i) {
    size_t p = buf.find(terms[i]);
    if (p < f.pos) {
      f.pos = p;
      f.which = i;
    }
  }
  return f;
}

// Longest suffix of buf that is a proper prefix of one of terms.
size_t partial_suffix(std::string_view buf, const std::vector<std::string>& terms) {
  size_t best = 0;
  for (const auto& t : terms) {
    size_t maxk = std::min(buf.size(), t.size() - 1);
    for (size_t k = maxk; k > best; --k)
      if (buf.compare(buf.size() - k, k, t, 0, k) == 0) {
        best = k;
        break;
      }
  }
  return best;
}

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ws(s.back())) s.remove_suffix(1);
  return s;
}

enum TextTerm { kTThinkEnd, kTThinkStart, kTEos, kTBos, kTOpen, kTClose, kTMark };
struct TextTerms {
  std::vector<std::string> strs;
  std::vector<TextTerm> kinds;
  TextTerms() {
    auto add = [&](std::string s, TextTerm k) {
      strs.push_back(std::move(s));
      kinds.push_back(k);
    };
    add(kThinkEnd, kTThinkEnd);
    add(kThinkStart, kTThinkStart);
    add(kEos, kTEos);
    add(kBos, kTBos);
    for (const auto& m : kMarks) {
      add("<" + m, kTOpen);
      add("</" + m, kTClose);
      add(m, kTMark);
    }
  }
};
const TextTerms& text_terms() {
  static const TextTerms t;
  return t;
}

enum ParamTerm { kPClose, kPOther, kPEos };
struct ParamTerms {
  std::vector<std::string> strs;
  std::vector<ParamTerm> kinds;
  ParamTerms() {
    for (const auto& m : kMarks) {
      strs.push_back("</" + m + "parameter");
      kinds.push_back(kPClose);
      for (const char* t : {"</invoke", "<parameter", "<invoke", "</tool_calls", "</function_calls"}) {
        std::string s(t);
        size_t slash = s[1] == '/' ? 2 : 1;
        strs.push_back(s.substr(0, slash) + m + s.substr(slash));
        kinds.push_back(kPOther);
      }
    }
    strs.push_back(kEos);
    kinds.push_back(kPEos);
  }
};
const ParamTerms& param_terms() {
  static const ParamTerms t;
  return t;
}

Delta make_delta(Delta::Kind kind, std::string text) {
  Delta d;
  d.kind = kind;
  d.text = std::move(text);
  return d;
}

bool is_block_name(const std::string& n) { return n == "tool_calls" || n == "function_calls"; }

}  // namespace

J ToolCallError::to_json() const {
  J j = J::object();
  j["type"] = "invalid_tool_call";
  j["code"] = code;
  j["message"] = message;
  if (!details.empty()) {
    j["errors"] = J::array();
    for (const auto& d : details) j["errors"].push_back(J{{"path", d.path}, {"message", d.message}});
  }
  return j;
}

J ToolCall::to_openai() const {
  J j = J::object();
  j["id"] = id;
  j["type"] = "function";
  j["function"] = J{{"name", name}, {"arguments", arguments}};
  return j;
}

DsmlParser::DsmlParser(ParserOptions opt) : opt_(std::move(opt)) {
  state_ = opt_.thinking ? State::Reasoning : State::Content;
  std::random_device rd;
  id_seed_ = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^
             static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}

ParsedMessage DsmlParser::parse(std::string_view text, ParserOptions opt) {
  DsmlParser p(std::move(opt));
  p.feed(text);
  p.finish();
  return p.msg_;
}

std::vector<Delta> DsmlParser::feed(std::string_view piece) {
  out_.clear();
  if (state_ == State::Done) return {};
  buf_.append(piece);
  run(false);
  return std::move(out_);
}

std::vector<Delta> DsmlParser::finish() {
  out_.clear();
  if (state_ != State::Done) {
    run(true);
    if (state_ == State::Param) end_param();
    if (call_open_) {
      warn("output ended inside a tool call");
      end_call(ToolCallError{"truncated", "the output ended before the tool call was complete", {}});
    }
    flush_pending_text(true);
    state_ = State::Done;
  }
  return std::move(out_);
}

void DsmlParser::run(bool final) {
  for (;;) {
    bool progressed = false;
    switch (state_) {
      case State::Reasoning:
      case State::Content: progressed = step_text(final); break;
      case State::Block:
      case State::Invoke: progressed = step_block(final); break;
      case State::Param: progressed = step_param(final); break;
      case State::Done: buf_.clear(); return;
    }
    if (!progressed) return;
  }
}

void DsmlParser::emit_text(State which, std::string_view s, bool final_piece) {
  (void)final_piece;
  if (s.empty()) return;
  std::string repaired;
  if (!utf8_valid(s)) {  // only at the very end of a stream (or for ill-formed input)
    repaired = utf8_lossy(s);
    s = repaired;
  }
  Delta::Kind kind = which == State::Reasoning ? Delta::Kind::Reasoning : Delta::Kind::Content;
  std::string text;
  if (kind == Delta::Kind::Content) {
    // Hold back trailing whitespace: it may be the "\n\n" that precedes a tool block.
    std::string all = held_ws_;
    all.append(s);
    size_t end = all.size();
    while (end > 0 && is_ws(all[end - 1])) --end;
    held_ws_ = all.substr(end);
    text = all.substr(0, end);
  } else {
    text.assign(s);
  }
  append_text(kind, std::move(text));
}

void DsmlParser::append_text(Delta::Kind kind, std::string text) {
  // Markup must not appear even across emissions (e.g. "<｜DS" + dropped tag + "ML｜"): if the end
  // of what was already sent plus the new text would form a marker, drop the completing bytes.
  static const std::string bad[] = {std::string(tokens::kDsml), "|DSML|", kThinkStart, kThinkEnd, kEos, kBos};
  std::string& tail = kind == Delta::Kind::Content ? tail_content_ : tail_reasoning_;
  for (bool again = true; again && !text.empty();) {
    again = false;
    std::string joined = tail + text;
    for (const auto& b : bad) {
      size_t pos = joined.find(b);
      if (pos != std::string::npos && pos < tail.size() && pos + b.size() > tail.size()) {
        text.erase(0, pos + b.size() - tail.size());
        warn("text that would complete a markup sequence dropped");
        again = true;
        break;
      }
    }
  }
  if (text.empty()) return;
  tail += text;
  if (tail.size() > 32) tail.erase(0, tail.size() - 32);
  any_text_ = true;
  if (kind == Delta::Kind::Content) msg_.content += text;
  else msg_.reasoning += text;
  if (!out_.empty() && out_.back().kind == kind) out_.back().text += text;
  else out_.push_back(make_delta(kind, std::move(text)));
}

void DsmlParser::flush_pending_text(bool) {
  if (held_ws_.empty()) return;
  std::string ws;
  ws.swap(held_ws_);
  append_text(Delta::Kind::Content, std::move(ws));
}

bool DsmlParser::step_text(bool final) {
  if (strip_leading_ws_) {
    size_t k = 0;
    while (k < buf_.size() && is_ws(buf_[k])) ++k;
    buf_.erase(0, k);
    if (buf_.empty()) return false;
    strip_leading_ws_ = false;
  }
  if (buf_.empty()) return false;
  const auto& tt = text_terms();
  Found f = find_first(buf_, tt.strs);
  if (f.pos == std::string::npos) {
    size_t hold = final ? 0 : std::max(partial_suffix(buf_, tt.strs), utf8_incomplete_tail(buf_));
    emit_text(state_, std::string_view(buf_).substr(0, buf_.size() - hold), final);
    buf_.erase(0, buf_.size() - hold);
    return false;
  }
  emit_text(state_, std::string_view(buf_).substr(0, f.pos), false);
  buf_.erase(0, f.pos);
  const std::string& term = tt.strs[f.which];
  switch (tt.kinds[f.which]) {
    case kTThinkEnd:
      if (state_ == State::Reasoning) state_ = State::Content;
      else warn("stray </think> in content dropped");
      buf_.erase(0, term.size());
      return true;
    case kTThinkStart:
      if (state_ == State::Content && !any_text_ && held_ws_.empty()) state_ = State::Reasoning;
      else warn("stray <think> dropped");
      buf_.erase(0, term.size());
      return true;
    case kTEos:
      buf_.erase(0, term.size());
      flush_pending_text(true);
      msg_.ended_with_eos = true;
      state_ = State::Done;
      return true;
    case kTBos:
      buf_.erase(0, term.size());
      return true;
    case kTOpen:
      // A tool block (or a bare invoke) starts; it ends the reasoning if we were still in it.
      if (state_ == State::Reasoning) warn("tool call started inside the reasoning (no </think>)");
      if (state_ == State::Content) {
        std::string ws;
        ws.swap(held_ws_);
        if (ws.size() >= 2 && ws.compare(ws.size() - 2, 2, "\n\n") == 0) ws.resize(ws.size() - 2);
        else ws.clear();
        if (!ws.empty()) append_text(Delta::Kind::Content, std::move(ws));
      }
      state_ = State::Block;
      return true;
    case kTClose: {
      size_t gt = buf_.find('>');
      if (gt == std::string::npos) {
        if (!final) return false;
        gt = buf_.size() - 1;
      }
      warn("stray closing DSML tag dropped");
      buf_.erase(0, gt + 1);
      return true;
    }
    case kTMark:
      warn("stray DSML marker dropped");
      buf_.erase(0, term.size());
      return true;
  }
  return false;
}

bool DsmlParser::read_tag(Tag& t, bool final, bool& malformed) {
  malformed = false;
  t = Tag{};
  t.closing = buf_.size() > 1 && buf_[1] == '/';
  size_t at = t.closing ? 2 : 1;
  const std::string* mark = nullptr;
  for (const auto& m : kMarks) {
    size_t avail = buf_.size() - std::min(buf_.size(), at);
    if (avail >= m.size()) {
      if (buf_.compare(at, m.size(), m) == 0) mark = &m;
    } else if (buf_.compare(at, avail, m, 0, avail) == 0 && (buf_.size() > 1 || true)) {
      if (!final) return false;  // could still become a DSML tag
    }
  }
  if (buf_.size() == 1 && !final) return false;  // just "<"
  if (!mark) {
    malformed = true;
    return true;
  }
  t.dsml = true;
  size_t i = at + mark->size();
  while (i < buf_.size() && (std::isalnum(static_cast<unsigned char>(buf_[i])) || buf_[i] == '_')) t.name += buf_[i++];
  // Attributes up to the closing '>' (outside quotes).
  char quote = 0;
  size_t gt = std::string::npos;
  for (size_t k = i; k < buf_.size(); ++k) {
    char c = buf_[k];
    if (quote) {
      if (c == quote) quote = 0;
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '>') {
      gt = k;
      break;
    } else if (c == '<') {
      break;  // a new tag starts: this one is broken
    }
  }
  if (gt == std::string::npos) {
    bool broken = false;
    for (size_t k = i; k < buf_.size() && !quote; ++k) broken = broken || buf_[k] == '<';
    if (!final && !broken && buf_.size() - i < 4096) return false;
    malformed = true;
    return true;
  }
  std::string_view attrs(buf_.data() + i, gt - i);
  size_t k = 0;
  while (k < attrs.size()) {
    while (k < attrs.size() && is_ws(attrs[k])) ++k;
    size_t ks = k;
    while (k < attrs.size() && (std::isalnum(static_cast<unsigned char>(attrs[k])) || attrs[k] == '_' || attrs[k] == '-')) ++k;
    std::string key(attrs.substr(ks, k - ks));
    while (k < attrs.size() && is_ws(attrs[k])) ++k;
    if (key.empty() || k >= attrs.size() || attrs[k] != '=') {
      if (k < attrs.size() && key.empty()) ++k;  // skip junk
      continue;
    }
    ++k;
    while (k < attrs.size() && is_ws(attrs[k])) ++k;
    std::string val;
    if (k < attrs.size() && (attrs[k] == '"' || attrs[k] == '\'')) {
      char q = attrs[k++];
      size_t e = attrs.find(q, k);
      if (e == std::string_view::npos) e = attrs.size();
      val.assign(attrs.substr(k, e - k));
      k = e + 1;
    } else {
      size_t s = k;
      while (k < attrs.size() && !is_ws(attrs[k]) && attrs[k] != '/') ++k;
      val.assign(attrs.substr(s, k - s));
    }
    if (!utf8_valid(val)) val = utf8_lossy(val);
    if (key == "name") {
      t.attr_name = val;
      t.has_name = true;
    } else if (key == "string") {
      t.attr_string = val;
      t.has_string = true;
    }
  }
  t.length = gt + 1;
  return true;
}

bool DsmlParser::step_block(bool final) {
  size_t k = 0;
  while (k < buf_.size() && is_ws(buf_[k])) ++k;
  if (state_ == State::Invoke) call_body_.append(buf_, 0, k);
  buf_.erase(0, k);
  if (buf_.empty()) return false;
  if (buf_[0] != '<') {
    size_t lt = buf_.find('<');
    size_t n = lt == std::string::npos ? buf_.size() : lt;
    if (!final && lt == std::string::npos) {
      n -= utf8_incomplete_tail(buf_);
      if (n == 0) return false;
    }
    if (state_ == State::Invoke) call_body_.append(buf_, 0, n);
    else warn("unexpected text inside the tool block ignored");
    buf_.erase(0, n);
    return true;
  }
  if (buf_.compare(0, kEos.size(), kEos) == 0) {
    buf_.erase(0, kEos.size());
    msg_.ended_with_eos = true;
    if (call_open_) {
      warn("end of sentence inside a tool call");
      end_call(ToolCallError{"truncated", "the output ended before the tool call was complete", {}});
    } else {
      warn("end of sentence before </｜DSML｜tool_calls>");
    }
    state_ = State::Done;
    return true;
  }
  if (buf_.size() < kEos.size() && kEos.compare(0, buf_.size(), buf_) == 0 && !final) return false;
  Tag t;
  bool malformed = false;
  if (!read_tag(t, final, malformed)) return false;
  if (malformed) {
    if (state_ == State::Invoke) call_body_ += '<';
    else warn("unexpected text inside the tool block ignored");
    buf_.erase(0, 1);
    return true;
  }
  buf_.erase(0, t.length);
  if (is_block_name(t.name)) {
    if (!t.closing) {
      if (state_ == State::Invoke) warn("nested tool block start ignored");
      return true;
    }
    if (state_ == State::Invoke) {
      warn("missing </｜DSML｜invoke>");
      end_call(std::nullopt);
    }
    state_ = State::Content;
    strip_leading_ws_ = true;
    return true;
  }
  if (t.name == "invoke") {
    if (!t.closing) {
      if (state_ == State::Invoke) {
        warn("missing </｜DSML｜invoke> before the next invoke");
        end_call(std::nullopt);
      }
      begin_call(t.attr_name, t.has_name);
      state_ = State::Invoke;
    } else if (state_ == State::Invoke) {
      end_call(std::nullopt);
      state_ = State::Block;
    } else {
      warn("stray </｜DSML｜invoke> ignored");
    }
    return true;
  }
  if (t.name == "parameter" && !t.closing) {
    if (state_ != State::Invoke) {
      warn("parameter outside an invoke ignored");
      return true;
    }
    begin_param(t);
    state_ = State::Param;
    return true;
  }
  warn("unexpected DSML tag <" + std::string(t.closing ? "/" : "") + t.name + "> ignored");
  return true;
}

bool DsmlParser::step_param(bool final) {
  const auto& pt = param_terms();
  Found f = find_first(buf_, pt.strs);
  if (f.pos == std::string::npos) {
    size_t hold = final ? 0 : std::max(partial_suffix(buf_, pt.strs), utf8_incomplete_tail(buf_));
    emit_param_value(std::string_view(buf_).substr(0, buf_.size() - hold), final);
    buf_.erase(0, buf_.size() - hold);
    if (final) {
      end_param();
      state_ = State::Invoke;
    }
    return false;
  }
  emit_param_value(std::string_view(buf_).substr(0, f.pos), false);
  buf_.erase(0, f.pos);
  if (pt.kinds[f.which] == kPClose) {
    Tag t;
    bool malformed = false;
    if (!read_tag(t, final, malformed)) return false;
    if (malformed) {
      warn("malformed </｜DSML｜parameter> tag");
      buf_.erase(0, pt.strs[f.which].size());
    } else {
      buf_.erase(0, t.length);
    }
  } else {
    warn("missing </｜DSML｜parameter>");
  }
  end_param();
  state_ = State::Invoke;
  return true;
}

const J* DsmlParser::tool_schema(const std::string& name) const {
  if (!opt_.tools.is_array()) return nullptr;
  for (const auto& t : opt_.tools) {
    const J* fn = t.is_object() && t.contains("function") ? &t["function"] : (t.is_object() ? &t : nullptr);
    if (fn && fn->is_object() && fn->contains("name") && (*fn)["name"] == name) return fn;
  }
  return nullptr;
}

void DsmlParser::emit_args(const std::string& frag) {
  if (frag.empty()) return;
  msg_.tool_calls.back().arguments += frag;
  if (!out_.empty() && out_.back().kind == Delta::Kind::ToolCallArguments && out_.back().index == call_index_)
    out_.back().text += frag;
  else {
    Delta d = make_delta(Delta::Kind::ToolCallArguments, frag);
    d.index = call_index_;
    out_.push_back(std::move(d));
  }
}

void DsmlParser::begin_call(const std::string& name, bool has_name) {
  ++call_index_;
  static const char* alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::mt19937_64 rng(id_seed_ + static_cast<uint64_t>(call_index_) * 0x9E3779B97F4A7C15ull);
  std::string id = opt_.id_prefix;
  for (int i = 0; i < 24; ++i) id += alnum[rng() % 62];
  ToolCall tc;
  tc.id = id;
  tc.name = name;
  msg_.tool_calls.push_back(tc);
  Delta d = make_delta(Delta::Kind::ToolCallBegin, "");
  d.index = call_index_;
  d.id = id;
  d.name = name;
  out_.push_back(std::move(d));
  call_open_ = true;
  call_name_ = name;
  call_body_.clear();
  n_params_ = 0;
  param_keys_.clear();
  call_error_.reset();
  if (!has_name || name.empty()) call_error_ = ToolCallError{"malformed_markup", "invoke tag without a tool name", {}};
}

void DsmlParser::begin_param(const Tag& t) {
  param_key_ = t.attr_name;
  if (!t.has_name && !call_error_)
    call_error_ = ToolCallError{"malformed_markup", "parameter tag without a name in call to " + call_name_, {}};
  if (std::find(param_keys_.begin(), param_keys_.end(), param_key_) != param_keys_.end() && !call_error_)
    call_error_ = ToolCallError{"duplicate_parameter", "parameter \"" + param_key_ + "\" given twice in call to " + call_name_, {}};
  param_keys_.push_back(param_key_);
  if (t.has_string && t.attr_string == "true") param_mode_ = ParamMode::String;
  else if (t.has_string && t.attr_string == "false") param_mode_ = ParamMode::Json;
  else {
    param_mode_ = ParamMode::Infer;
    if (const J* fn = tool_schema(call_name_)) {
      const J& params = fn->contains("parameters") ? (*fn)["parameters"] : J();
      if (params.is_object() && params.contains("properties") && params["properties"].is_object() &&
          params["properties"].contains(param_key_)) {
        const J& ps = params["properties"][param_key_];
        if (ps.is_object() && ps.contains("type") && ps["type"] == "string") param_mode_ = ParamMode::String;
      }
    }
    warn("parameter \"" + param_key_ + "\" without string=\"true|false\"");
  }
  param_raw_.clear();
  std::string frag = n_params_ == 0 ? "{" : ", ";
  frag += py_json_string(param_key_) + ": ";
  if (param_mode_ == ParamMode::String) frag += '"';
  ++n_params_;
  emit_args(frag);
}

void DsmlParser::emit_param_value(std::string_view v, bool) {
  if (v.empty()) return;
  std::string repaired;
  if (!utf8_valid(v)) {
    repaired = utf8_lossy(v);
    v = repaired;
  }
  if (param_mode_ == ParamMode::String) {
    std::string esc;
    py_json_escape_into(v, esc);
    emit_args(esc);
  } else {
    param_raw_.append(v);
  }
}

void DsmlParser::end_param() {
  if (param_mode_ == ParamMode::String) {
    emit_args("\"");
  } else {
    std::string_view tv = trim(param_raw_);
    bool valid = false;
    if (!tv.empty()) {
      valid = J::accept(tv.begin(), tv.end());
    }
    if (valid) {
      emit_args(std::string(tv));
    } else {
      if (param_mode_ == ParamMode::Json) warn("parameter \"" + param_key_ + "\" is not valid JSON; kept as a string");
      emit_args(py_json_string(utf8_valid(param_raw_) ? param_raw_ : utf8_lossy(param_raw_)));
    }
  }
  param_mode_ = ParamMode::String;
  param_raw_.clear();
}

void DsmlParser::end_call(std::optional<ToolCallError> err) {
  if (!call_open_) return;
  if (n_params_ == 0) {
    std::string_view body = trim(call_body_);
    bool used = false;
    if (!body.empty()) {
      try {
        J j = J::parse(body.begin(), body.end());
        if (j.is_object()) {
          emit_args(std::string(body));
          used = true;
          warn("invoke body given as JSON instead of parameters");
        }
      } catch (const J::exception&) {
      }
      if (!used && !err && !call_error_)
        call_error_ = ToolCallError{"malformed_markup", "unexpected text inside invoke of " + call_name_, {}};
    }
    if (!used) emit_args("{}");
  } else {
    emit_args("}");
  }
  ToolCall& tc = msg_.tool_calls.back();
  if (!err) err = call_error_;
  if (!err) {
    J args;
    bool ok = true;
    try {
      args = J::parse(tc.arguments);
    } catch (const J::exception& e) {
      ok = false;
      err = ToolCallError{"invalid_arguments", std::string("arguments are not valid JSON: ") + e.what(), {}};
    }
    if (ok && opt_.tools.is_array()) {
      const J* fn = tool_schema(tc.name);
      if (!fn) {
        err = ToolCallError{"unknown_tool", "the model called \"" + tc.name + "\", which is not among the request's tools", {}};
      } else if (fn->contains("parameters")) {
        auto errs = validate_json_schema(args, (*fn)["parameters"]);
        if (!errs.empty()) {
          std::string m = "arguments of " + tc.name + " violate its schema: " + (errs[0].path.empty() ? "" : errs[0].path + ": ") +
                          errs[0].message;
          if (errs.size() > 1) m += " (and " + std::to_string(errs.size() - 1) + " more)";
          err = ToolCallError{"schema_violation", m, std::move(errs)};
        }
      }
    }
  }
  tc.error = err;
  Delta d = make_delta(Delta::Kind::ToolCallEnd, "");
  d.index = call_index_;
  d.error = err;
  out_.push_back(std::move(d));
  call_open_ = false;
  call_body_.clear();
  call_error_.reset();
}

}  // namespace v4::text

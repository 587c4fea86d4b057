#include "net/sse_parser.h"

namespace v4::net {

void SseParser::feed(std::string_view p) {
  size_t i = 0;
  if (!bom_checked_) {
    // The BOM may itself arrive split; hold bytes until three are known.
    line_.append(p);
    if (line_.size() < 3 && std::string_view("\xEF\xBB\xBF").substr(0, line_.size()) == line_) return;
    bom_checked_ = true;
    std::string head = std::move(line_);
    line_.clear();
    std::string_view h = head;
    if (h.substr(0, 3) == "\xEF\xBB\xBF") h.remove_prefix(3);
    feed(h);
    return;
  }
  if (after_cr_ && !p.empty()) {
    if (p[0] == '\n') i = 1;
    after_cr_ = false;
  }
  while (i < p.size()) {
    // A plain scan: string_view::find_first_of with a two-character set calls memchr over the set
    // for every input byte (that was the bench client's costliest user-space function).
    size_t j = i;
    while (j < p.size() && p[j] != '\n' && p[j] != '\r') ++j;
    if (j == p.size()) {
      line_.append(p.substr(i));
      return;
    }
    if (line_.empty()) {
      line(p.substr(i, j - i));
    } else {
      line_.append(p.substr(i, j - i));
      std::string l = std::move(line_);
      line_.clear();
      line(l);
    }
    if (p[j] == '\r') {
      if (j + 1 < p.size()) {
        i = p[j + 1] == '\n' ? j + 2 : j + 1;
      } else {
        after_cr_ = true;
        i = j + 1;
      }
    } else {
      i = j + 1;
    }
  }
}

void SseParser::finish() {
  if (!bom_checked_) {
    bom_checked_ = true;
    std::string head = std::move(line_);
    line_.clear();
    if (head != "\xEF\xBB\xBF" && head != "\xEF\xBB" && head != "\xEF") feed(head);
  }
  after_cr_ = false;
  // An unterminated final line is not a complete line: per spec the partial event is discarded.
}

void SseParser::line(std::string_view l) {
  if (l.empty()) {
    dispatch();
    return;
  }
  if (l[0] == ':') {
    ++comments_;
    return;
  }
  std::string_view name = l, value;
  if (auto c = l.find(':'); c != std::string_view::npos) {
    name = l.substr(0, c);
    value = l.substr(c + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  }
  if (name == "data") {
    data_.append(value);
    data_.push_back('\n');
    has_data_ = true;
    has_fields_ = true;
  } else if (name == "event") {
    event_.assign(value);
    has_fields_ = true;
  } else if (name == "id") {
    if (value.find('\0') == std::string_view::npos) last_id_.assign(value);
    has_fields_ = true;
  } else if (name == "retry") {
    bool digits = !value.empty();
    for (char ch : value) digits = digits && ch >= '0' && ch <= '9';
    if (digits && value.size() < 18) retry_ = std::stoll(std::string(value));
    has_fields_ = true;
  }
}

void SseParser::dispatch() {
  if (has_data_) {
    data_.pop_back();  // the trailing '\n'
    // Swap rather than move: the buffers keep their capacity for the next event.
    ev_.data.swap(data_);
    if (event_.empty()) ev_.event.assign("message");
    else ev_.event.swap(event_);
    if (ev_.id != last_id_) ev_.id = last_id_;
    ev_.retry = retry_;
    ++events_;
    data_.clear();
    event_.clear();
    retry_.reset();
    has_data_ = has_fields_ = false;
    cb_(ev_);
    return;
  }
  data_.clear();
  event_.clear();
  retry_.reset();
  has_fields_ = false;
}

}  // namespace v4::net

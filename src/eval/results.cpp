#include "eval/results.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "core/error.h"

namespace v4::eval {

namespace {

std::string slurp(const std::string& path, bool* exists) {
  std::ifstream in(path, std::ios::binary);
  *exists = static_cast<bool>(in);
  if (!in) return "";
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Parses the whole text; returns the byte length of the well-formed prefix (a torn tail excluded).
size_t parse_lines(const std::string& path, const std::string& text, bool tolerate_torn_tail,
                   std::vector<Outcome>& out) {
  std::unordered_map<std::string, size_t> at;
  size_t pos = 0, good = 0;
  long no = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    const bool last = nl == std::string::npos;
    std::string line = text.substr(pos, last ? std::string::npos : nl - pos);
    ++no;
    if (line.find_first_not_of(" \t\r") != std::string::npos) {
      try {
        Outcome o = Outcome::from_json(Json::parse(line));
        auto it = at.find(o.key());
        if (it == at.end()) {
          at[o.key()] = out.size();
          out.push_back(std::move(o));
        } else {
          out[it->second] = std::move(o);
        }
      } catch (const std::exception& e) {
        if (last && tolerate_torn_tail) return good;  // written up to a crash: cut it off
        throw InputError(path + ":" + std::to_string(no) + ": not a results line (" + e.what() + ")");
      }
    }
    if (last) return text.size();
    pos = nl + 1;
    good = pos;
  }
  return good;
}

}  // namespace

std::vector<Outcome> load_results(const std::string& path, bool tolerate_torn_tail) {
  bool exists = false;
  std::string text = slurp(path, &exists);
  if (!exists) throw InputError("cannot read " + path);
  std::vector<Outcome> out;
  parse_lines(path, text, tolerate_torn_tail, out);
  return out;
}

ResultsWriter::ResultsWriter(const std::string& path) : path_(path) {
  bool exists = false;
  std::string text = slurp(path, &exists);
  std::vector<Outcome> prev;
  size_t good = exists ? parse_lines(path, text, true, prev) : 0;
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw InputError("cannot write " + path + ": " + std::strerror(errno));
  if (good < text.size()) {
    // A torn last line (the previous run was killed mid-write): drop it so the file stays valid.
    if (::ftruncate(fd_, static_cast<off_t>(good)) != 0)
      throw InputError("cannot repair " + path + ": " + std::strerror(errno));
  } else if (!text.empty() && text.back() != '\n') {
    // A complete last line without its newline: terminate it before appending.
    if (::write(fd_, "\n", 1) != 1) throw InputError("cannot write " + path + ": " + std::strerror(errno));
  }
  for (const auto& o : prev)
    if (o.error_kind != "transport") done_[o.key()] = true;
}

ResultsWriter::~ResultsWriter() {
  if (fd_ >= 0) ::close(fd_);
}

bool ResultsWriter::done(const std::string& key) const {
  std::lock_guard<std::mutex> lk(mu_);
  return done_.count(key) != 0;
}

void ResultsWriter::append(const Outcome& o) {
  std::string line = o.to_json().dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
  std::lock_guard<std::mutex> lk(mu_);
  // One write(2) with O_APPEND: the line lands whole or (killed mid-call) as a torn tail that the
  // next open cuts off. Loop only for the rare partial write to a regular file.
  size_t off = 0;
  while (off < line.size()) {
    ssize_t w = ::write(fd_, line.data() + off, line.size() - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("cannot write " + path_ + ": " + std::strerror(errno));
    }
    off += static_cast<size_t>(w);
  }
  ::fdatasync(fd_);
  if (o.error_kind != "transport") done_[o.key()] = true;
}

}  // namespace v4::eval

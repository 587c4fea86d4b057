#include "eval/niah.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "core/error.h"
#include "eval/scorers.h"

namespace v4::eval {

namespace fs = std::filesystem;

namespace {

// A built-in corpus: plain expository sentences from word lists, drawn by a seeded generator so
// any length can be made without repeating a paragraph and without real-world facts that could
// collide with the needles.
const char* kSubjects[] = {"The river authority", "A small bakery", "The regional library", "An old lighthouse keeper", "The harbour council",
                           "A travelling botanist", "The mountain railway", "A village school", "The weaving cooperative", "An amateur astronomer",
                           "The ferry company", "A market gardener", "The town archive", "A clockmaker's apprentice", "The forestry office"};
const char* kVerbs[] = {"recorded", "repaired", "measured", "described", "catalogued", "photographed", "rebuilt", "studied", "planted", "surveyed",
                        "restored", "mapped", "collected", "painted", "discussed"};
const char* kObjects[] = {"the northern footbridge", "a collection of pressed ferns", "the winter tide tables", "three copper weather vanes",
                          "the chapel's stained windows", "an inventory of fishing nets", "the orchard's pear varieties", "a set of brass telescopes",
                          "the quarry's drainage channels", "the mill's wooden gears", "a ledger of grain prices", "the coastal footpath",
                          "the old signal house", "a row of beehives", "the meadow's stone walls"};
const char* kTails[] = {"after the spring floods", "during a long dry summer", "before the autumn fair", "with help from volunteers",
                        "over several patient weeks", "despite the constant rain", "for the annual report", "at the request of the mayor",
                        "while the roads were closed", "in time for the festival", "using notes from earlier decades", "as the days grew shorter"};
const char* kColors[] = {"violet", "amber", "crimson", "teal", "silver", "ochre", "indigo", "scarlet", "jade", "cobalt", "ivory", "copper"};
const char* kAnimals[] = {"heron", "lynx", "otter", "falcon", "badger", "salamander", "ibis", "marmot", "tortoise", "kestrel", "newt", "bison"};
const char* kOrdinals[] = {"first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "eleventh", "twelfth"};

template <size_t N>
const char* pick(const char* const (&a)[N], std::mt19937_64& r) {
  return a[r() % N];
}

class ParagraphSource {
 public:
  ParagraphSource(const std::string& dir, uint64_t seed) : rng_(seed ^ 0x5eedULL) {
    if (!dir.empty()) load_dir(dir);
  }
  std::string next() {
    if (!files_.empty()) {
      std::string p = files_[pos_ % files_.size()];
      ++pos_;
      return p;
    }
    std::string p;
    const int sentences = 3 + static_cast<int>(rng_() % 4);
    for (int i = 0; i < sentences; ++i) {
      if (i) p += ' ';
      p += std::string(pick(kSubjects, rng_)) + " " + pick(kVerbs, rng_) + " " + pick(kObjects, rng_) + " " + pick(kTails, rng_) + ".";
    }
    return p;
  }

 private:
  void load_dir(const std::string& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) throw InputError("--haystack: " + dir + " is not a directory");
    std::vector<fs::path> paths;
    for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) break;
      const std::string name = it->path().filename().string();
      if (it->is_directory() && (name.empty() || name[0] == '.' || name == "node_modules" || name == "build")) {
        it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file() && it->file_size() > 0 && it->file_size() < (1 << 20) && name[0] != '.') paths.push_back(it->path());
    }
    std::sort(paths.begin(), paths.end());
    for (const auto& p : paths) {
      std::ifstream in(p, std::ios::binary);
      std::ostringstream ss;
      ss << in.rdbuf();
      std::string t = ss.str();
      if (t.find('\0') != std::string::npos) continue;  // binary
      // Paragraphs of about 40 lines, so needles land between them at any depth.
      std::istringstream ls(t);
      std::string line, para = "File " + fs::relative(p, dir).string() + ":\n";
      int n = 0;
      while (std::getline(ls, line)) {
        para += line + "\n";
        if (++n == 40) {
          files_.push_back(para);
          para.clear();
          n = 0;
        }
      }
      if (!para.empty()) files_.push_back(para);
    }
    if (files_.empty()) throw InputError("--haystack: no text files under " + dir);
  }
  std::mt19937_64 rng_;
  std::vector<std::string> files_;
  size_t pos_ = 0;
};

std::string code_for(std::mt19937_64& r) { return std::to_string(1000000 + r() % 9000000); }

class NiahSuite : public Suite {
 public:
  NiahSuite(std::vector<Item> items, Json desc) : items_(std::move(items)), desc_(std::move(desc)) {}
  std::string name() const override { return "niah"; }
  const std::vector<Item>& items() const override { return items_; }
  Json describe() const override { return desc_; }
  Outcome run(const Item& it, int sample, const Endpoint& ep, const TurnSettings& ts) const override {
    Outcome o = start_outcome(it, sample);
    Answer a = ep.chat(make_request(it, ts));
    take_answer(o, a);
    if (!a.error.empty()) return o;
    o.passed = normalize_answer(a.text) == it.expected.get<std::string>();
    o.score = o.passed ? 1 : 0;
    if (!o.passed) o.detail["expected"] = it.expected;
    return o;
  }

 private:
  std::vector<Item> items_;
  Json desc_;
};

}  // namespace

std::vector<long> parse_lengths(const std::string& s, const std::string& flag) {
  std::vector<long> out;
  for (const std::string& item : split_list(s)) {
    long mul = 1;
    char last = static_cast<char>(std::tolower(static_cast<unsigned char>(item.back())));
    if (last == 'k') mul = 1024;
    else if (last == 'm') mul = 1024L * 1024;
    std::string num = mul == 1 ? item : item.substr(0, item.size() - 1);
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(num, &used);
    } catch (...) {
      used = 0;
    }
    if (used == 0 || used != num.size() || v <= 0) throw InputError(flag + ": '" + item + "' is not a length such as 4k, 32k, 128k or 1m");
    long L = static_cast<long>(v * static_cast<double>(mul));
    if (L < 256) throw InputError(flag + ": " + item + " is too short (at least 256 tokens)");
    out.push_back(L);
  }
  if (out.empty()) throw InputError(flag + " is empty");
  return out;
}

std::vector<double> parse_depths(const std::string& s, const std::string& flag) {
  std::vector<double> out;
  for (const std::string& item : split_list(s)) {
    size_t used = 0;
    double v = -1;
    try {
      v = std::stod(item, &used);
    } catch (...) {
      used = 0;
    }
    if (used != item.size() || v < 0 || v > 100) throw InputError(flag + ": '" + item + "' is not a depth percentage in 0..100");
    out.push_back(v);
  }
  if (out.empty()) throw InputError(flag + " is empty");
  return out;
}

std::string normalize_answer(const std::string& s) {
  std::string t = strip(s);
  for (;;) {
    std::string before = t;
    for (const char* w : {"**", "`", "\"", "'"})
      if (t.size() >= 2 * std::strlen(w) && t.rfind(w, 0) == 0 && t.compare(t.size() - std::strlen(w), std::strlen(w), w) == 0)
        t = strip(t.substr(std::strlen(w), t.size() - 2 * std::strlen(w)));
    if (!t.empty() && t.back() == '.') t = strip(t.substr(0, t.size() - 1));
    if (t == before) break;
  }
  return t;
}

std::unique_ptr<Suite> make_niah_suite(const NiahOptions& opt, const text::Tokenizer& tok) {
  if (opt.needles < 2 || opt.needles > 12) throw InputError("--needles must be in 2..12");
  if (opt.per_cell < 1) throw InputError("--per-cell must be at least 1");
  std::vector<Item> items;
  Json skipped = Json::array();
  std::vector<long> lengths;
  for (long L : opt.lengths) {
    if (opt.context > 0 && L + opt.answer_tokens > opt.context) skipped.push_back(L);
    else lengths.push_back(L);
  }
  if (lengths.empty())
    throw InputError("every --lengths value exceeds the endpoint's context of " + std::to_string(opt.context) + " tokens (with " +
                     std::to_string(opt.answer_tokens) + " left for the answer)");
  // One paragraph stream per run: each length takes its own prefix of it, so a longer context
  // contains the shorter one's document (as in the usual NIAH grids).
  ParagraphSource src(opt.haystack_dir, opt.seed);
  std::vector<std::pair<std::string, long>> paras;  // text + tokens (with the "\n\n" after it)
  long have = 0;
  const long longest = *std::max_element(lengths.begin(), lengths.end());
  while (have < longest) {
    std::string p = src.next() + "\n\n";
    long n = static_cast<long>(tok.encode(p).size());
    paras.push_back({std::move(p), n});
    have += n;
  }
  const std::string head = "Below is a long document. Read it carefully; the question after it asks about one detail in it.\n\n<document>\n";
  std::mt19937_64 rng(opt.seed);
  for (const auto& mode : opt.modes) {
    if (mode != "single" && mode != "mrcr") throw InputError("--niah-modes: unknown mode '" + mode + "' (single, mrcr)");
    for (long L : lengths)
      for (double d : opt.depths)
        for (int r = 0; r < opt.per_cell; ++r) {
          const std::string key = std::string(pick(kColors, rng)) + " " + pick(kAnimals, rng);
          const int n = mode == "single" ? 1 : opt.needles;
          std::vector<std::string> codes;
          for (int i = 0; i < n; ++i) codes.push_back(code_for(rng));
          const int k = mode == "single" ? 0 : static_cast<int>(rng() % static_cast<uint64_t>(n));
          std::vector<std::string> needles;
          for (int i = 0; i < n; ++i)
            needles.push_back(mode == "single" ? "The secret code for the " + key + " is " + codes[i] + ".\n\n"
                                               : "Note: a secret code for the " + key + " is " + codes[i] + ".\n\n");
          std::string question =
              mode == "single"
                  ? "</document>\n\nWhat is the secret code for the " + key + "? Answer with the code only."
                  : "</document>\n\nThe document contains " + std::to_string(n) + " notes giving a secret code for the " + key +
                        ". What is the code in the " + kOrdinals[k] + " of those notes, counting from the start of the document? Answer with the code only.";
          long overhead = static_cast<long>(tok.encode(head).size() + tok.encode(question).size()) + 16;  // + chat template
          for (const auto& nd : needles) overhead += static_cast<long>(tok.encode(nd).size());
          // Whole paragraphs up to the budget.
          std::vector<long> cum;  // tokens before paragraph i
          long used = 0;
          size_t np = 0;
          while (np < paras.size() && used + paras[np].second <= L - overhead) {
            cum.push_back(used);
            used += paras[np].second;
            ++np;
          }
          cum.push_back(used);
          // Needle positions: paragraph boundaries nearest to the wanted depths.
          auto boundary = [&](double pct) {
            const double want = pct / 100.0 * static_cast<double>(used);
            size_t best = 0;
            for (size_t i = 0; i < cum.size(); ++i)
              if (std::abs(static_cast<double>(cum[i]) - want) < std::abs(static_cast<double>(cum[best]) - want)) best = i;
            return best;
          };
          std::vector<size_t> at;
          for (int i = 0; i < n; ++i) at.push_back(boundary(n == 1 ? d : d + (100.0 - d) * i / (n - 1)));
          std::string doc = head;
          for (size_t i = 0; i <= np; ++i) {
            for (int q = 0; q < n; ++q)
              if (at[static_cast<size_t>(q)] == i) doc += needles[static_cast<size_t>(q)];
            if (i < np) doc += paras[i].first;
          }
          doc += question;
          Item it;
          char did[64];
          std::snprintf(did, sizeof did, "%g", d);
          it.id = "niah/" + mode + "/L" + std::to_string(L) + "/D" + did + "/r" + std::to_string(r);
          it.category = mode == "single" ? "single" : "mrcr-" + std::to_string(n);
          it.messages = Json::array({{{"role", "user"}, {"content", doc}}});
          it.expected = codes[static_cast<size_t>(k)];
          it.scorer = "niah";
          it.max_tokens = opt.answer_tokens;
          it.meta = {{"length", L}, {"depth", d}, {"tokens", static_cast<long>(tok.encode(doc).size())}};
          if (n > 1) it.meta["needle"] = k + 1;
          items.push_back(std::move(it));
        }
  }
  Json desc = {{"lengths", lengths}, {"depths", opt.depths}, {"modes", opt.modes}, {"needles", opt.needles},
               {"haystack", opt.haystack_dir.empty() ? "built-in" : opt.haystack_dir}, {"skipped_lengths", skipped}};
  if (opt.context > 0) desc["context"] = opt.context;
  return std::make_unique<NiahSuite>(std::move(items), std::move(desc));
}

}  // namespace v4::eval

// DeepSeek V4 special tokens: literal strings used by the chat encoding and their ids
// (spec §5; "confirmed" ids were seen in real V4 token streams, the rest follow the V4.1 table and
// are UNCONFIRMED for V4 — load the real tokenizer.json for production).
#pragma once
#include <cstdint>
#include <string_view>

namespace v4::text::tokens {

inline constexpr std::string_view kBos = "<｜begin▁of▁sentence｜>";   // 0 (confirmed)
inline constexpr std::string_view kEos = "<｜end▁of▁sentence｜>";     // 1 (confirmed)
inline constexpr std::string_view kPad = "<｜▁pad▁｜>";                 // 2
inline constexpr std::string_view kUser = "<｜User｜>";                 // 128803 (confirmed)
inline constexpr std::string_view kAssistant = "<｜Assistant｜>";       // 128804 (confirmed)
inline constexpr std::string_view kThinkStart = "<think>";              // 128821 (confirmed)
inline constexpr std::string_view kThinkEnd = "</think>";               // 128822 (confirmed)
inline constexpr std::string_view kDsml = "｜DSML｜";                   // 128825 (confirmed)
inline constexpr std::string_view kLatestReminder = "<｜latest_reminder｜>";  // 128828 (confirmed)
inline constexpr std::string_view kTaskAction = "<｜action｜>";          // 128829
inline constexpr std::string_view kTaskQuery = "<｜query｜>";            // 128830
inline constexpr std::string_view kTaskAuthority = "<｜authority｜>";    // 128831
inline constexpr std::string_view kTaskDomain = "<｜domain｜>";          // 128832
inline constexpr std::string_view kTaskTitle = "<｜title｜>";            // 128836
inline constexpr std::string_view kTaskReadUrl = "<｜read_url｜>";       // 128845

inline constexpr int32_t kBosId = 0;
inline constexpr int32_t kEosId = 1;
inline constexpr int32_t kPadId = 2;
inline constexpr int32_t kUserId = 128803;
inline constexpr int32_t kAssistantId = 128804;
inline constexpr int32_t kThinkStartId = 128821;
inline constexpr int32_t kThinkEndId = 128822;
inline constexpr int32_t kDsmlId = 128825;
inline constexpr int32_t kLatestReminderId = 128828;
inline constexpr int32_t kVocabSize = 129280;  // embedding rows; ids 0..129279

// The V4 entries above the V3 table (128815..128846), in id order starting at 128815.
inline constexpr std::string_view kV4Added[] = {
    "<｜begin▁of▁repo▁name｜>", "<｜end▁of▁repo▁name｜>", "<｜begin▁of▁file▁name｜>",
    "<｜end▁of▁file▁name｜>", "<｜begin▁of▁file｜>", "<｜end▁of▁file｜>", "<think>", "</think>",
    "<｜place▁holder▁for▁copy｜>", "<｜place▁holder▁for▁pointer▁replace｜>", "｜DSML｜", "<｜begin▁sys｜>",
    "<｜end▁sys｜>", "<｜latest_reminder｜>", "<｜action｜>", "<｜query｜>", "<｜authority｜>", "<｜domain｜>",
    "<｜task｜>", "<｜political｜>", "<｜entity｜>", "<｜title｜>", "<｜safety｜>", "<｜answer｜>", "<｜search｜>",
    "<dsml:", "</dsml:", "<｜search▁begin｜>", "<｜search▁end｜>", "<｜extracted_url｜>", "<｜read_url｜>",
    "<｜end_of_query｜>"};
inline constexpr int32_t kV4AddedFirstId = 128815;

}  // namespace v4::text::tokens

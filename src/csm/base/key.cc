// The key rules of include/csm/key.h.
#include "csm/key.h"

#include <cstdio>
#include <string>

namespace csm {
namespace {

// The key as it may be shown in a message: control characters escaped, long keys cut.
std::string Printable(std::string_view key) {
  std::string out;
  for (unsigned char ch : key.substr(0, 64)) {
    if (ch < 0x20 || ch == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", ch);
      out += buf;
    } else {
      out += static_cast<char>(ch);
    }
  }
  if (key.size() > 64) out += "...";
  return out;
}

}  // namespace

Status ValidateKeyToRead(std::string_view key) {
  if (key.empty() || key.size() > kMaxKeyLength) {
    return InvalidArgument("keys are 1 to " + std::to_string(kMaxKeyLength) + " bytes; got " +
                           std::to_string(key.size()) + (key.empty() ? "" : " ('" + Printable(key) + "')"));
  }
  for (size_t i = 0; i < key.size(); ++i) {
    const auto ch = static_cast<unsigned char>(key[i]);
    if (ch < 0x20 || ch == 0x7f) {
      return InvalidArgument("key '" + Printable(key) + "' has a control character at byte " +
                             std::to_string(i) + ": keys are printable (no bytes 0x00-0x1f or 0x7f)");
    }
  }
  return Status::OK();
}

Status ValidateKey(std::string_view key) {
  CSM_RETURN_IF_ERROR(ValidateKeyToRead(key));
  if (key.find(kPartSeparator) != std::string_view::npos) {
    return InvalidArgument("key '" + Printable(key) + "' contains '#', which is reserved for the parts "
                           "of appended tables ('<table>#<n>'): choose a key without it");
  }
  return Status::OK();
}

}  // namespace csm

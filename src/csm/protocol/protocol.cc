// Protocol helpers; see protocol.h.
#include "csm/protocol/protocol.h"

#include "csm/base/hash.h"
#include "csm/directory/directory_layout.h"
#include "csm/object/object_layout.h"

#ifndef CSM_VERSION
#define CSM_VERSION "0.0.0"
#endif

namespace csm::protocol {

Status WireReader::ReadHeader(MessageType* type) {
  MessageHeader h{};
  CSM_RETURN_IF_ERROR(Get(&h));
  if (h.magic != kProtocolMagic) return Corruption("not a csm protocol message (bad magic)");
  if (h.version != kProtocolVersion) {
    return Corruption("protocol version " + std::to_string(h.version) + ", expected " +
                      std::to_string(kProtocolVersion) + ": upgrade client and csmd together");
  }
  *type = static_cast<MessageType>(h.type);
  request_id_ = h.request_id;
  return Status::OK();
}

Status WireReader::GetString(std::string* out, uint32_t max_length) {
  uint32_t n = 0;
  CSM_RETURN_IF_ERROR(Get(&n));
  if (n > max_length) {
    return Corruption("string of " + std::to_string(n) + " bytes exceeds the limit of " +
                      std::to_string(max_length));
  }
  if (remaining() < n) return Truncated();
  out->assign(bytes_.data() + pos_, n);
  pos_ += n;
  return Status::OK();
}

Status WireReader::GetStatus(Status* out) {
  int32_t code = 0;
  std::string message;
  CSM_RETURN_IF_ERROR(Get(&code));
  CSM_RETURN_IF_ERROR(GetString(&message, 1 << 16));
  if (code < 0 || code > static_cast<int32_t>(StatusCode::kInternal)) {
    return Corruption("unknown status code " + std::to_string(code));
  }
  *out = Status(static_cast<StatusCode>(code), std::move(message));
  return Status::OK();
}

std::string BuildFingerprintText() {
  std::string s = "csm " CSM_VERSION;
#if defined(__clang__)
  s += " clang " __clang_version__;
#elif defined(__GNUC__)
  s += " gcc " __VERSION__;
#endif
#if defined(__GLIBCXX__)
  s += " libstdc++ " + std::to_string(__GLIBCXX__);
#endif
  s += " object-layout " + std::to_string(object::kObjectLayoutVersion);
  s += " directory-layout " + std::to_string(directory::kDirectoryLayoutVersion);
  s += " protocol " + std::to_string(kProtocolVersion);
#if defined(_GLIBCXX_DEBUG)
  s += " debug-containers";
#endif
  return s;
}

uint64_t BuildFingerprint() {
  static const uint64_t fp = Hash64(BuildFingerprintText());
  return fp;
}

}  // namespace csm::protocol

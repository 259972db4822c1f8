// Reads the producer's map in place (a program outside csm's tree).
#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>

#include "csm/client.h"

using Index = csm::map<int32_t, csm::string>;

int main() {
  auto client = csm::Client::Connect();
  if (!client.ok()) return std::printf("error: %s\n", client.status().ToString().c_str()), 1;
  auto index = (*client)->Get<Index>("package/index", std::chrono::seconds(10));
  if (!index.ok()) return std::printf("error: %s\n", index.status().ToString().c_str()), 1;
  int32_t good = 0;
  for (const auto& [k, v] : **index) {
    const std::string expected = "value number " + std::to_string(k) + " of the package test";
    good += std::string_view(v) == expected ? 1 : 0;
  }
  std::printf("consumed %d of %zu\n", good, (*index)->size());
  return good == 1000 ? 0 : 1;
}

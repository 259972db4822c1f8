// Builds a map in the global heap and commits it (a program outside csm's tree).
#include <cstdio>
#include <string>

#include "csm/client.h"

using Index = csm::map<int32_t, csm::string>;

int main() {
  auto client = csm::Client::Connect();
  if (!client.ok()) return std::printf("error: %s\n", client.status().ToString().c_str()), 1;
  auto builder = (*client)->NewBuilder();
  if (!builder.ok()) return std::printf("error: %s\n", builder.status().ToString().c_str()), 1;
  Index* index = *builder->New<Index>();
  csm::Status s = builder->Populate([&] {
    for (int32_t i = 0; i < 1000; ++i) {
      const std::string value = "value number " + std::to_string(i) + " of the package test";
      (*index)[i].assign(value.data(), value.size());
    }
  });
  if (s.ok()) s = builder->Commit("package/index");
  if (!s.ok()) return std::printf("error: %s\n", s.ToString().c_str()), 1;
  std::printf("committed csm %s\n", csm::Version());
  return 0;
}

// `csm put`, `csm get`, `csm cat`: Arrow tables in the global heap from the command line.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "csm/client.h"

namespace csm::tools {

struct ArrowFlags {
  std::string file, key, format = "csv";
  int64_t rows = 10;
  bool append = false;
};

struct ArrowCommands {
  CLI::App* put;
  CLI::App* get;
  CLI::App* cat;
};

ArrowCommands AddArrowCommands(CLI::App& app, ArrowFlags* flags);
// The exit code of the command that was parsed, or nullopt if none of these was.
std::optional<int> RunArrowCommand(const ArrowCommands& commands, const ArrowFlags& flags,
                                   Client& client);

}  // namespace csm::tools

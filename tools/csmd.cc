// csmd: the csm node daemon. Same as `csm node`.
#include "node_command.h"

int main(int argc, char** argv) {
  CLI::App app{"csmd: the csm node daemon (owns the node's global-heap memory)"};
  csm::tools::NodeFlags flags;
  csm::tools::AddNodeFlags(&app, &flags);
  CLI11_PARSE(app, argc, argv);
  return csm::tools::RunNode(flags);
}

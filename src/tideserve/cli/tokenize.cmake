# `tideserve tokenize` (src/tideserve/cli/tokenize_command.h): include this file from
# src/tideserve/cli/CMakeLists.txt and link tideserve_cli_tokenize into the tideserve binary, then
# call tideserve::cli::add_tokenize_command(app) in main.
add_library(tideserve_cli_tokenize STATIC ${CMAKE_CURRENT_LIST_DIR}/tokenize_command.cc)
target_include_directories(tideserve_cli_tokenize PUBLIC ${PROJECT_SOURCE_DIR}/src)
target_link_libraries(tideserve_cli_tokenize PUBLIC tideserve_text CLI11::CLI11 PRIVATE fmt::fmt)

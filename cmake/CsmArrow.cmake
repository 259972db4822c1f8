# Apache Arrow C++ for the `arrow` layer: an installed Arrow (find_package) if there is
# one, else the libraries and headers shipped in the pyarrow wheel that
# scripts/setup.sh installs into .venv (pinned there). Defines the target csm::arrow_deps
# (Arrow, Parquet, and Flight for the benchmark) or sets CSM_HAVE_ARROW to OFF.
set(CSM_PYARROW_DIR "" CACHE PATH "pyarrow package directory (default: found in .venv)")
set(CSM_HAVE_ARROW OFF)

find_package(Arrow CONFIG QUIET)
find_package(Parquet CONFIG QUIET)
if(Arrow_FOUND AND Parquet_FOUND)
  add_library(csm_arrow_deps INTERFACE)
  target_link_libraries(csm_arrow_deps INTERFACE Arrow::arrow_shared Parquet::parquet_shared)
  add_library(csm::arrow_deps ALIAS csm_arrow_deps)
  set(CSM_HAVE_ARROW ON)
  message(STATUS "csm: Arrow ${Arrow_VERSION} (installed)")
  return()
endif()

if(NOT CSM_PYARROW_DIR)
  file(GLOB _pyarrow_dirs "${PROJECT_SOURCE_DIR}/.venv/lib/python3*/site-packages/pyarrow")
  list(LENGTH _pyarrow_dirs _n)
  if(_n GREATER 0)
    list(GET _pyarrow_dirs 0 CSM_PYARROW_DIR)
  endif()
endif()
file(GLOB _libarrow "${CSM_PYARROW_DIR}/libarrow.so.[0-9]*")
if(NOT CSM_PYARROW_DIR OR NOT _libarrow)
  message(STATUS "csm: no Arrow (run scripts/setup.sh): the arrow layer is not built")
  return()
endif()

# One imported target per versioned library of the wheel (libarrow.so.2600 …).
function(csm_wheel_lib name)
  file(GLOB _lib "${CSM_PYARROW_DIR}/lib${name}.so.[0-9][0-9]*")
  list(FILTER _lib EXCLUDE REGEX "\\.so\\.[0-9]+\\.[0-9]")  # the plain versioned name
  list(GET _lib 0 _lib)
  add_library(csm_wheel_${name} SHARED IMPORTED)
  set_target_properties(csm_wheel_${name} PROPERTIES IMPORTED_LOCATION "${_lib}"
                        IMPORTED_NO_SONAME OFF)
endfunction()
foreach(lib arrow parquet arrow_flight arrow_compute)
  csm_wheel_lib(${lib})
endforeach()
add_library(csm_arrow_deps INTERFACE)
target_include_directories(csm_arrow_deps SYSTEM INTERFACE "${CSM_PYARROW_DIR}/include")
target_link_libraries(csm_arrow_deps INTERFACE csm_wheel_arrow csm_wheel_parquet csm_wheel_arrow_compute)
add_library(csm::arrow_deps ALIAS csm_arrow_deps)
add_library(csm_arrow_flight_deps INTERFACE)
target_link_libraries(csm_arrow_flight_deps INTERFACE csm_arrow_deps csm_wheel_arrow_flight)
set(CSM_HAVE_ARROW ON)
file(READ "${CSM_PYARROW_DIR}/include/arrow/util/config.h" _config)
string(REGEX MATCH "ARROW_VERSION_STRING \"([0-9.]+)\"" _ "${_config}")
message(STATUS "csm: Arrow ${CMAKE_MATCH_1} from the pyarrow wheel at ${CSM_PYARROW_DIR}")

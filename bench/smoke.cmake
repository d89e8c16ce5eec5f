# SPDX-License-Identifier: Apache-2.0
# One bench-smoke test: runs a benchmark at small sizes and fails when it exits non-zero or prints
# none of its figures. The figures themselves are not judged.
#   cmake -DFIGURES=<regular expression the output must match> -P smoke.cmake -- <program> [args...]
set(command)
set(in_command OFF)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE ${last})
  if(in_command)
    list(APPEND command "${CMAKE_ARGV${i}}")
  elseif("${CMAKE_ARGV${i}}" STREQUAL "--")
    set(in_command ON)
  endif()
endforeach()
if(NOT command OR NOT DEFINED FIGURES)
  message(FATAL_ERROR "usage: cmake -DFIGURES=<regex> -P smoke.cmake -- <program> [args...]")
endif()

execute_process(COMMAND ${command} RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE errors)
message("${output}")
if(errors)
  message("stderr:\n${errors}")
endif()
if(NOT result STREQUAL "0")
  message(FATAL_ERROR "benchmark failed (exit status: ${result})")
endif()
if(NOT output MATCHES "${FIGURES}")
  message(FATAL_ERROR "benchmark printed no figures (nothing matches '${FIGURES}')")
endif()

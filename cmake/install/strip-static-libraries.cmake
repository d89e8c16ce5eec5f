# SPDX-License-Identifier: Apache-2.0
# CPACK_PRE_BUILD_SCRIPTS (cmake/FotaPackaging.cmake): CPACK_STRIP_FILES strips programs and shared
# objects only; the client's static libraries of a RelWithDebInfo build carry their debug
# information too (ten times their code). Strip it before packing, as Debian's dh_strip does.
file(GLOB_RECURSE fota_archives "${CPACK_TEMPORARY_INSTALL_DIRECTORY}/*/libfota_*.a")
foreach(archive IN LISTS fota_archives)
  execute_process(COMMAND strip --strip-debug --enable-deterministic-archives "${archive}"
                  RESULT_VARIABLE status)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "strip --strip-debug ${archive} failed (${status})")
  endif()
endforeach()

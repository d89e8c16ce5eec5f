# One warnings target for every target of the project.
add_library(fota_warnings INTERFACE)
target_compile_options(fota_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Woverloaded-virtual
  -Wcast-align -Wnull-dereference -Wimplicit-fallthrough)
if(FOTA_WERROR)
  target_compile_options(fota_warnings INTERFACE -Werror)
endif()

if(FOTA_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
  # A Mosquitto started by a test must preload the ASan runtime to load an instrumented plugin.
  execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=libasan.so
                  OUTPUT_VARIABLE FOTA_ASAN_RUNTIME OUTPUT_STRIP_TRAILING_WHITESPACE)
endif()

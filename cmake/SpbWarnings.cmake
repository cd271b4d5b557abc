# Warnings and sanitizers shared by every target: spb_target_flags(target).
function(spb_target_flags tgt)
  target_compile_options(${tgt} PRIVATE -Wall -Wextra -Wshadow -Wpointer-arith
    $<$<COMPILE_LANGUAGE:C>:-Wstrict-prototypes>
    -Wno-unused-parameter)
  if(SPB_WERROR)
    target_compile_options(${tgt} PRIVATE -Werror)
  endif()
  if(SPB_SANITIZE)
    target_compile_options(${tgt} PRIVATE -fsanitize=${SPB_SANITIZE} -fno-omit-frame-pointer -g)
    target_link_options(${tgt} PRIVATE -fsanitize=${SPB_SANITIZE})
    if(SPB_SANITIZE STREQUAL "thread")
      # The stats segment's seqlock fence orders writes for readers in
      # other processes, which TSan cannot see: its warning is noise.
      target_compile_options(${tgt} PRIVATE $<$<C_COMPILER_ID:GNU>:-Wno-tsan>)
    endif()
  endif()
endfunction()

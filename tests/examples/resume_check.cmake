# A run that saves checkpoints, then a second run that resumes from a copy of them, must end
# where the first ended: bit for bit (REL 0) under the same layout, within REL otherwise.
#   cmake -DFIRST="cmd;..." -DSECOND="cmd;..." -DDIR=d -DOUT=prefix -DCOMPARE=compare_safetensors
#         -DREL=r -P resume_check.cmake
# FIRST gets --checkpoint-dir DIR/a --save OUT_a.safetensors; SECOND gets --resume
# --checkpoint-dir DIR/b (a copy of DIR/a) --save OUT_b.safetensors.
file(REMOVE_RECURSE ${DIR}/a ${DIR}/b)
execute_process(COMMAND ${FIRST} --checkpoint-dir ${DIR}/a --save ${OUT}_a.safetensors
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the first run exited with ${rc}")
endif()
file(COPY ${DIR}/a/ DESTINATION ${DIR}/b)
execute_process(COMMAND ${SECOND} --resume --checkpoint-dir ${DIR}/b --save ${OUT}_b.safetensors
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the resumed run exited with ${rc}")
endif()
if(NOT "${out}${err}" MATCHES "resuming from")
  message(FATAL_ERROR "the second run did not resume")
endif()
execute_process(COMMAND ${COMPARE} ${OUT}_b.safetensors ${OUT}_a.safetensors --rel ${REL}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the resumed run does not end where the first ended")
endif()

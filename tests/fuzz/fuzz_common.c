/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The start every fuzz target shares: the log is kept to errors, so that a
 * run prints findings, not the refusals of millions of malformed inputs.
 * Nothing here may hide a finding (no signal handlers, no error swallowing).
 */
#include "fuzz.h"

#include "coffer/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    coffer_log_set_level(COFFER_LOG_ERROR);
    return 0;
}

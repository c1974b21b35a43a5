/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What every fuzz target of tests/fuzz declares: libFuzzer's two entry
 * points. fuzz_common.c defines the start every target shares.
 */
#ifndef COFFER_FUZZ_H
#define COFFER_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the reader of audit exports (src/audit/import.c, the format
 * recognised from the first line: JSON lines or CSV) through
 * coffer_audit_verify_file, which also feeds the verifier with what it
 * reads (keys, sealed checkpoints, events), and the strict parser of a
 * checkpoint's signed message, coffer_audit_message_parse, with the same
 * bytes; a message that parses must build back into a message.
 */
#include "fuzz.h"

#include "coffer/auditlog.h"

#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct coffer_audit_report rep;
    struct coffer_audit_cp_fields f;
    char back[2048];
    size_t len = 0;
    FILE *in;

    if (size > 0 && (in = fmemopen((void *)data, size, "r")) != NULL) {
        (void)coffer_audit_verify_file(in, "fuzz.jsonl", NULL, NULL, NULL, NULL, &rep);
        (void)fclose(in);
    }
    if (coffer_audit_message_parse(data, size, &f) == COFFER_OK) {
        (void)coffer_audit_message_build(&f, back, sizeof(back), &len);
    }
    return 0;
}

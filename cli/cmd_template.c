/*
 * cmd_template.c - `lowbit template MODEL`: render a conversation with the model's chat template (or
 * one from a file) and print the prompt text exactly as the model would see it.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fputs("usage: lowbit template (MODEL | --chat-template FILE) [options]\n\n"
          "Prints the prompt a chat template makes of a conversation (no newline is added).\n\n"
          "  -p, --prompt TEXT       the user's message\n"
          "  --system TEXT           a system message before it\n"
          "  --no-generation-prompt  do not end with the assistant's turn header\n"
          "  --vars FILE.json        all template variables as a JSON object instead\n"
          "                          ({\"messages\": [{\"role\": ..., \"content\": ...}], \"add_generation_prompt\": true, ...})\n"
          "  --chat-template FILE    use this Jinja template instead of the model's\n"
          "  --source                print the template's source instead\n",
          f);
}

int cmd_template(int argc, char **argv) {
    const char *model = NULL, *tmpl_file = NULL, *vars_file = NULL, *prompt = NULL, *system = NULL;
    bool gen = true, source = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && v) { prompt = v; i++; }
        else if (!strcmp(a, "--system") && v) { system = v; i++; }
        else if (!strcmp(a, "--vars") && v) { vars_file = v; i++; }
        else if (!strcmp(a, "--chat-template") && v) { tmpl_file = v; i++; }
        else if (!strcmp(a, "--no-generation-prompt")) gen = false;
        else if (!strcmp(a, "--source")) source = true;
        else if (a[0] == '-') { usage(stderr); return cli_fail("template: unknown option or missing value: %s", a); }
        else if (!model) model = a;
        else { usage(stderr); return cli_fail("template: unexpected argument %s", a); }
    }
    if (!model && !tmpl_file) {
        usage(stderr);
        return cli_fail("template: give MODEL or --chat-template FILE");
    }
    if (!vars_file && !prompt && !source) {
        usage(stderr);
        return cli_fail("template: give -p PROMPT or --vars FILE.json");
    }
    lb_error e;
    lb_status s;
    lb_chat_template *t = NULL;
    char *src = NULL, *vars = NULL, *text = NULL;
    size_t src_len = 0, vars_len = 0, len = 0;
    int rc = 0;
    if (tmpl_file) {
        if ((rc = cli_read_text(tmpl_file, &src, &src_len)) != 0) goto done;
        s = lb_chat_template_parse(src, src_len, &t, &e);
        if (s) { rc = cli_fail("%s: %s", tmpl_file, e.msg); goto done; }
    } else if ((s = lb_chat_template_load(model, &t, &e)) != LB_OK) {
        rc = cli_fail_lb(s, &e);
        goto done;
    }
    if (source) {
        const char *p = lb_chat_template_source(t, &len);
        fwrite(p, 1, len, stdout);
        goto done;
    }
    if (vars_file) {
        if ((rc = cli_read_text(vars_file, &vars, &vars_len)) != 0) goto done;
        s = lb_chat_template_render_json(t, vars, vars_len, &text, &len, &e);
    } else {
        lb_chat_message msgs[2] = {{"system", system}, {"user", prompt}};
        lb_chat_params params = {gen, NULL, NULL};
        s = lb_chat_template_render(t, system ? msgs : msgs + 1, system ? 2 : 1, &params, &text, &len, &e);
    }
    if (s) { rc = cli_fail_lb(s, &e); goto done; }
    fwrite(text, 1, len, stdout);
    fflush(stdout);
done:
    lb_free(text);
    free(vars);
    free(src);
    lb_chat_template_free(t);
    return rc;
}

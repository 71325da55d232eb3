/* config_cmd.c - `idsync config dump` (the effective configuration, with
 * defaults, secrets shown as *** with their source) and `idsync config
 * docs` (the configuration reference generated from the option tables). */
#include "cmd/cmd.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "util/banned.h"

int cmd_config(struct cli *cli, int argc, char **argv)
{
    static const struct option longopts[] = {{NULL, 0, NULL, 0}};
    struct strbuf out = STRBUF_INIT;
    const char *what;
    int status;

    if (cli_getopt(cli, argc, argv, "", longopts) != -1) {
        return EXIT_CONFIG;
    }
    if (optind >= argc) {
        return cli_usage_error(cli, "config needs dump or docs");
    }
    what = argv[optind++];
    if (optind < argc) {
        return cli_usage_error(cli, "unexpected argument \"%s\"", argv[optind]);
    }
    if (strcmp(what, "docs") == 0) {
        config_docs(&out);
        if (cli->json) {
            json_t *doc = json_object();

            json_object_set_new(doc, "markdown", cli_json_str(out.buf));
            cli_json_print(doc);
        } else {
            fwrite(out.buf, 1, out.len, stdout);
        }
        strbuf_release(&out);
        return EXIT_OK;
    }
    if (strcmp(what, "dump") != 0) {
        return cli_usage_error(cli, "config: unknown action \"%s\" (expected dump or docs)", what);
    }
    status = cli_load_config(cli);
    if (status != 0) {
        return status;
    }
    config_dump(cli->cfg, cli->json, &out);
    fwrite(out.buf, 1, out.len, stdout);
    if (out.len > 0 && out.buf[out.len - 1] != '\n') {
        fputc('\n', stdout);
    }
    strbuf_release(&out);
    return EXIT_OK;
}

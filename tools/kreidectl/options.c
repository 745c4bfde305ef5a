/* The global options and the context they fill: the gateway's URL, the
 * credentials, the output form and the page size of lists. */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "kreidectl.h"

int ctl_set_url(ctl_ctx *ctx, const char *url)
{
    size_t len = strlen(url);
    while (len > 0 && url[len - 1] == '/')
        len--;
    if ((strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) || len >= sizeof(ctx->url) ||
        len <= (url[4] == 's' ? 8u : 7u)) {
        fprintf(stderr, "kreidectl: --url must be an http:// or https:// URL, not '%s'\n", url);
        return CTL_EXIT_USAGE;
    }
    memcpy(ctx->url, url, len);
    ctx->url[len] = '\0';
    return CTL_EXIT_OK;
}

int ctl_global_option(ctl_ctx *ctx, int c, const char *arg)
{
    switch (c) {
    case CTL_OPT_URL:
        return ctl_set_url(ctx, arg);
    case CTL_OPT_TOKEN:
        ctx->token = arg;
        ctx->keys = NULL;
        return CTL_EXIT_OK;
    case CTL_OPT_KEYS:
        ctx->keys = arg;
        ctx->token = NULL;
        return CTL_EXIT_OK;
    case CTL_OPT_JSON:
        ctx->json = true;
        return CTL_EXIT_OK;
    case CTL_OPT_PAGE_SIZE: {
        char *end;
        long n = strtol(arg, &end, 10);
        if (*arg == '\0' || *end != '\0' || n < 1 || n > 500) {
            fprintf(stderr, "kreidectl: --page-size must be 1..500\n");
            return CTL_EXIT_USAGE;
        }
        ctx->page_size = (unsigned)n;
        return CTL_EXIT_OK;
    }
    default:
        return -1;
    }
}

void ctl_ctx_clear(ctl_ctx *ctx)
{
    free(ctx->_minted);
    ctx->_minted = NULL;
    if (ctx->_curl != NULL)
        curl_easy_cleanup(ctx->_curl);
    ctx->_curl = NULL;
}

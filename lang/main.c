/* main.c -- the plume command: run a script, run -e code, run stdin, or start the REPL.
** Modelled on lua.c: `arg` holds the script arguments, errors print "plume: file:line: message", and
** Ctrl-C stops the running code (both Lua code, through a hook, and plume's C loops, through
** plm_interrupt) without killing the REPL. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <readline/history.h>
#include <readline/readline.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plume.h"
#include "plume_lua.h"

static const char *progname = "plume";
static lua_State *globalL;
static plm_intr *intr;    /* the interrupt domain of the one state the command runs */

static void lstop(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted");
}

static void on_sigint(int sig)
{
    int mask = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
    (void)sig;
    plm_intr_raise(intr);
    if (globalL) lua_sethook(globalL, lstop, mask, 1);   /* as lua.c does: async-signal-safe in practice */
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s [options] [script [args]]\n"
            "  -e code     run code (may repeat)\n"
            "  -i          enter the REPL after running the script\n"
            "  --quiet     no progress lines (sets plume.quiet = true)\n"
            "  --version   print the version and exit\n"
            "  --help      print this help and exit\n"
            "  -           run standard input\n"
            "With no script: the REPL when standard input is a terminal, else standard input as a script.\n",
            progname);
}

static int msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    if (getenv("PLUME_TRACEBACK"))
        luaL_traceback(L, L, msg, 1);
    else
        lua_pushstring(L, msg);
    return 1;
}

/* Run the function on top of the stack with narg arguments under the SIGINT handler. */
static int docall(lua_State *L, int narg, int nres)
{
    int status, base = lua_gettop(L) - narg;
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    globalL = L;
    signal(SIGINT, on_sigint);
    status = lua_pcall(L, narg, nres, base);
    signal(SIGINT, SIG_DFL);
    lua_sethook(L, NULL, 0, 0);
    plm_interrupt_clear();
    lua_remove(L, base);
    return status;
}

static int report(lua_State *L, int status)
{
    if (status != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        fprintf(stderr, "%s: %s\n", progname, msg ? msg : "(error)");
        fflush(stderr);
        lua_pop(L, 1);
    }
    return status;
}

static void create_arg_table(lua_State *L, char **argv, int argc, int script)
{
    int i;
    lua_createtable(L, argc - script, script + 1);
    for (i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
}

static int run_script(lua_State *L, const char *fname, char **argv, int argc, int script)
{
    int status, n, i;
    if (fname && strcmp(fname, "-") == 0) fname = NULL;   /* stdin */
    status = luaL_loadfile(L, fname);
    if (status != LUA_OK) return report(L, status);
    n = argc - script - 1;
    luaL_checkstack(L, n + 3, "too many arguments to script");
    for (i = 1; i <= n; i++) lua_pushstring(L, argv[script + i]);
    return report(L, docall(L, n, 0));
}

/* ---- REPL ---- */

#define EOFMARK "<eof>"
#define MARKLEN (sizeof(EOFMARK) / sizeof(char) - 1)

static int incomplete(lua_State *L, int status)
{
    if (status == LUA_ERRSYNTAX) {
        size_t lmsg;
        const char *msg = lua_tolstring(L, -1, &lmsg);
        if (lmsg >= MARKLEN && strcmp(msg + lmsg - MARKLEN, EOFMARK) == 0) {
            lua_pop(L, 1);
            return 1;
        }
    }
    return 0;
}

static char history_path[1024];

static void prompt_sigint(int sig)
{
    (void)sig;
    /* Ctrl-C at the prompt: drop the line being typed and start afresh */
    write(STDOUT_FILENO, "\n", 1);
    rl_on_new_line();
    rl_replace_line("", 0);
    rl_redisplay();
}

static char *read_line(const char *prompt)
{
    char *line;
    signal(SIGINT, prompt_sigint);
    line = readline(prompt);
    signal(SIGINT, SIG_DFL);
    return line;
}

/* Print the values left on the stack: tostring for objects that have one, plume.inspect for tables. */
static void print_results(lua_State *L, int base)
{
    int n = lua_gettop(L) - base, i;
    if (n <= 0) return;
    for (i = 1; i <= n; i++) {
        int idx = base + i;
        if (lua_type(L, idx) == LUA_TTABLE && !luaL_getmetafield(L, idx, "__tostring")) {
            lua_getglobal(L, "plume");
            if (lua_getfield(L, -1, "inspect") == LUA_TFUNCTION) {
                lua_pushvalue(L, idx);
                if (lua_pcall(L, 1, 1, 0) != LUA_OK) lua_pop(L, 1), luaL_tolstring(L, idx, NULL);
            } else {
                lua_pop(L, 1);
                luaL_tolstring(L, idx, NULL);
            }
            lua_remove(L, -2);
        } else {
            if (lua_type(L, idx) == LUA_TTABLE) lua_pop(L, 1);   /* the __tostring fetched above */
            luaL_tolstring(L, idx, NULL);
        }
        fputs(lua_tostring(L, -1), stdout);
        fputs(i < n ? "\t" : "\n", stdout);
        lua_pop(L, 1);
    }
    fflush(stdout);
}

static void repl(lua_State *L)
{
    const char *home = getenv("HOME");
    char *line;
    if (home) {
        snprintf(history_path, sizeof history_path, "%s/.plume_history", home);
        if (read_history(history_path) != 0) write_history(history_path);   /* append_history needs the file */
    }
    rl_catch_signals = 0;
    printf("plume %s (Lua 5.4) -- Ctrl-D to quit, Ctrl-C stops a running command\n", PLUME_VERSION);
    while ((line = read_line("> ")) != NULL) {
        luaL_Buffer b;
        int status, base;
        char *chunk;
        size_t len;
        if (!*line) {
            free(line);
            continue;
        }
        /* an expression first ("return " .. line), then as a statement, then keep reading lines */
        luaL_buffinit(L, &b);
        luaL_addstring(&b, line);
        luaL_pushresult(&b);
        free(line);
        base = lua_gettop(L);
        for (;;) {
            const char *src = lua_tolstring(L, base, &len);
            const char *ret = lua_pushfstring(L, "return %s;", src);
            status = luaL_loadbuffer(L, ret, strlen(ret), "=stdin");
            lua_remove(L, -2);
            if (status == LUA_OK) break;
            lua_pop(L, 1);
            status = luaL_loadbuffer(L, src, len, "=stdin");
            if (!incomplete(L, status)) break;
            if (!(line = read_line(">> "))) break;
            lua_pushfstring(L, "%s\n%s", src, line);
            free(line);
            lua_replace(L, base);
        }
        chunk = strdup(lua_tostring(L, base));
        if (chunk) {
            add_history(chunk);
            if (*history_path) append_history(1, history_path), history_truncate_file(history_path, 1000);
            free(chunk);
        }
        lua_remove(L, base);
        base = lua_gettop(L) - 1;
        if (status == LUA_OK) status = docall(L, 0, LUA_MULTRET);
        if (status == LUA_OK)
            print_results(L, base);
        else
            report(L, status);
        lua_settop(L, base);
    }
    printf("\n");
}

int main(int argc, char **argv)
{
    plm_State *P;
    lua_State *L;
    int i, script = 0, status = LUA_OK, interactive = 0, ran_code = 0;

    if (argv[0] && argv[0][0]) progname = "plume";
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-v") == 0) {
            printf("plume %s (%s)\n", PLUME_VERSION, LUA_RELEASE);
            return 0;
        }
    }
    {
        /* under mpirun every rank runs this command; without a launcher this is one rank and MPI stays off */
        plm_ctx ctx;
        plm_ctx_clear(&ctx);
        if (plm_comm_init(&ctx) != PLM_OK) {
            fprintf(stderr, "plume: %s\n", plm_ctx_errmsg(&ctx));
            return 1;
        }
    }
    if (!(P = plm_open())) {
        fprintf(stderr, "plume: cannot create state: not enough memory\n");
        return 1;
    }
    L = plm_lua(P);
    /* everything this command runs, on this thread and on the engines' workers, polls the state's domain */
    intr = plm_state_intr(P);
    plm_intr_use(intr);
    for (i = 1; i < argc && !script; i++) {
        if (strcmp(argv[i], "-e") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "plume: '-e' needs an argument\n");
                usage(stderr);
                plm_close(P);
                return 1;
            }
            i++;
            ran_code = 1;
            continue;
        } else if (strcmp(argv[i], "-i") == 0) {
            interactive = 1;
        } else if (strcmp(argv[i], "--quiet") == 0 || strcmp(argv[i], "-q") == 0) {
            lua_getglobal(L, "plume");
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "quiet");
            lua_pop(L, 1);
        } else if (strcmp(argv[i], "-") == 0 || argv[i][0] != '-') {
            script = i;
        } else {
            fprintf(stderr, "plume: unrecognized option '%s'\n", argv[i]);
            usage(stderr);
            plm_close(P);
            return 1;
        }
    }
    create_arg_table(L, argv, argc, script);
    /* -e chunks run in order, before the script */
    for (i = 1; i < argc && (!script || i < script) && status == LUA_OK; i++) {
        if (strcmp(argv[i], "-e") == 0) {
            const char *code = argv[++i];
            status = luaL_loadbuffer(L, code, strlen(code), "=(command line)");
            status = report(L, status == LUA_OK ? docall(L, 0, 0) : status);
        }
    }
    if (status == LUA_OK) {
        if (script)
            status = run_script(L, argv[script], argv, argc, script);
        else if (!ran_code && !interactive) {
            if (isatty(STDIN_FILENO))
                interactive = 1;
            else
                status = run_script(L, "-", argv, argc, argc - 1);
        }
    }
    if (status == LUA_OK && interactive) repl(L);
    plm_close(P);
    plm_comm_finalize();
    return status == LUA_OK ? 0 : 1;
}

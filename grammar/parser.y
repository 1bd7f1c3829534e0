/* parser.y: the grammar of the cnnc language (language.md).
 *
 * Newlines do not end statements: a statement ends where the next cannot
 * continue it. Errors are reported through diag.c and the parser recovers at
 * the next statement, so one run reports several mistakes.
 */
%define api.pure full
%define parse.error custom
%locations
%param {yyscan_t scanner}
%parse-param {Program *prog}

%code requires {
#include "cnnc.h"
typedef void *yyscan_t;
struct LexState { int line, col; const char *tok; size_t toklen; };
typedef struct { Arg *at; int n, cap; } ArgList;
typedef struct { const char **names; Loc *locs; int n, cap; } NameList;
}

%code provides {
int yylex(YYSTYPE *lvalp, YYLTYPE *llocp, yyscan_t scanner);
int yylex_init_extra(struct LexState *extra, yyscan_t *scanner);
int yylex_destroy(yyscan_t scanner);
struct LexState *yyget_extra(yyscan_t scanner);
void yyerror(YYLTYPE *loc, yyscan_t scanner, Program *prog, const char *msg);
}

%code {
#include <string.h>

void *yy_scan_bytes(const char *bytes, int len, yyscan_t scanner);

static Loc loc_of(YYLTYPE l)
{
    return (Loc){l.first_line, l.first_column,
                 l.last_line == l.first_line ? l.last_column - l.first_column : 1};
}

static bool too_deep;     /* reported once per file */

/* Sets e's depth from a child's; refuses trees deeper than MAX_AST_DEPTH. */
static void deepen(Ast *e, const Ast *child)
{
    if (child->depth + 1 > e->depth)
        e->depth = child->depth + 1;
    if (e->depth > MAX_AST_DEPTH && !too_deep) {
        too_deep = true;
        if (e->kind == A_PIPE)
            error_at(e->loc, "a pipeline of more than %d stages", MAX_AST_DEPTH);
        else
            error_at(e->loc, "an expression nested more than %d deep", MAX_AST_DEPTH);
    }
}

static Ast *bin(int op, Ast *a, Ast *b, YYLTYPE l)
{
    Ast *e = ast_new(op == '>' ? A_PIPE : A_BIN, loc_of(l));
    e->op = op, e->a = a, e->b = b;
    deepen(e, a);
    deepen(e, b);
    return e->depth > MAX_AST_DEPTH ? a : e;
}

static Ast *call(const char *name, ArgList args, YYLTYPE l)
{
    Ast *e = ast_new(A_CALL, loc_of(l));
    e->str = name, e->args = args.at, e->nargs = args.n;
    for (int i = 0; i < args.n; i++)
        deepen(e, args.at[i].val);
    if (e->depth > MAX_AST_DEPTH)
        e->nargs = 0;
    return e;
}

static ArgList arg_push(ArgList l, Arg a)
{
    if (l.n == l.cap) {
        int cap = l.cap ? 2 * l.cap : 4;
        Arg *at = arena_alloc(sizeof(Arg) * (size_t)cap);
        if (l.n)
            memcpy(at, l.at, sizeof(Arg) * (size_t)l.n);
        l.at = at, l.cap = cap;
    }
    l.at[l.n++] = a;
    return l;
}

static NameList name_push(NameList l, const char *name, Loc loc)
{
    if (l.n == l.cap) {
        int cap = l.cap ? 2 * l.cap : 4;
        const char **names = arena_alloc(sizeof(char *) * (size_t)cap);
        Loc *locs = arena_alloc(sizeof(Loc) * (size_t)cap);
        if (l.n) {
            memcpy(names, l.names, sizeof(char *) * (size_t)l.n);
            memcpy(locs, l.locs, sizeof(Loc) * (size_t)l.n);
        }
        l.names = names, l.locs = locs, l.cap = cap;
    }
    l.names[l.n] = name, l.locs[l.n++] = loc;
    return l;
}

static Stmt *stmt(StmtKind kind, YYLTYPE l)
{
    Stmt *s = arena_alloc(sizeof *s);
    s->kind = kind, s->loc = loc_of(l);
    return s;
}

static Stmt *named(StmtKind kind, YYLTYPE l, const char *name, YYLTYPE nl)
{
    Stmt *s = stmt(kind, l);
    s->name = name, s->nameloc = loc_of(nl);
    return s;
}

static void append(Program *p, Stmt *s, Stmt **last)
{
    if (!s)
        return;
    if (*last)
        (*last)->next = s;
    else
        p->stmts = s;
    *last = s;
}

static Stmt *last_stmt;
}

%union {
    Ast *ast;
    const char *str;
    Stmt *stmt;
    ArgList args;
    NameList names;
}

%token NETWORK "network" INPUT "input" LABELS "labels" TARGET "target" PARAM "param"
%token OUTPUT "output" BLOCK "block" LOSS "loss" TRAIN "train" DATA "data"
%token ARROW "->"
%token <ast> NUM "number" SIZE "size" STR "string" HOLE "_"
%token <str> IDENT "name"

%type <ast> pipe expr primary shape
%type <stmt> stmt
%type <args> args arglist settings dims
%type <names> names
%type <str> key

%left '+' '-'
%left '*' '/'
%left '@'
%precedence NEG

/* A statement may not start with '-' or '(': the previous statement's expression
 * would continue into it (`a \n -b` is `a - b`, `f \n (x)` a call). Shifting,
 * Bison's default, is right in all six conflicts. */
%expect 6

%%

/* program = stmt* */
program
    : %empty                    { last_stmt = NULL; }
    | program stmt              { append(prog, $2, &last_stmt); }
    | program error             { }
    ;

stmt
    : "network" IDENT                       { $$ = named(S_NETWORK, @1, $2, @2); }
    | "input" IDENT ':' shape               { $$ = named(S_INPUT, @1, $2, @2); $$->shape = $4; }
    | "labels" IDENT ':' expr               { $$ = named(S_LABELS, @1, $2, @2); $$->expr = $4; }
    | "target" IDENT ':' shape              { $$ = named(S_TARGET, @1, $2, @2); $$->shape = $4; }
    | "param" IDENT ':' shape               { $$ = named(S_PARAM, @1, $2, @2); $$->shape = $4; }
    | "param" IDENT ':' shape '=' expr      { $$ = named(S_PARAM, @1, $2, @2); $$->shape = $4; $$->expr = $6; }
    | "output" IDENT                        { $$ = named(S_OUTPUT, @1, $2, @2); }
    | "output" IDENT ',' names              {   /* several outputs: the first, then params */
          $$ = named(S_OUTPUT, @1, $2, @2);
          $$->params = $4.names, $$->paramlocs = $4.locs, $$->nparams = $4.n;
      }
    | IDENT '=' pipe                        { $$ = named(S_BIND, @1, $1, @1); $$->expr = $3; }
    | pipe                                  { $$ = stmt(S_PIPE, @1); $$->expr = $1; }
    | "block" IDENT '=' pipe                { $$ = named(S_BLOCK, @1, $2, @2); $$->expr = $4; }
    | "block" IDENT '(' names ')' '=' pipe  {
          $$ = named(S_BLOCK, @1, $2, @2); $$->expr = $7;
          $$->params = $4.names, $$->paramlocs = $4.locs, $$->nparams = $4.n;
      }
    | "loss" '=' pipe                       { $$ = stmt(S_LOSS, @1); $$->expr = $3; }
    | "train" '{' settings '}'              { $$ = stmt(S_TRAIN, @1); $$->args = $3.at, $$->nargs = $3.n; }
    | "data" '{' settings '}'               { $$ = stmt(S_DATA, @1); $$->args = $3.at, $$->nargs = $3.n; }
    ;

/* names = name ("," name)* */
names
    : IDENT                     { $$ = name_push((NameList){0}, $1, loc_of(@1)); }
    | names ',' IDENT           { $$ = name_push($1, $3, loc_of(@3)); }
    ;

/* shape = "[" (number ("," number)*)? "]" */
shape
    : '[' ']'                   { $$ = ast_new(A_SHAPE, loc_of(@$)); }
    | '[' dims ']'              { $$ = ast_new(A_SHAPE, loc_of(@$)); $$->args = $2.at, $$->nargs = $2.n; }
    ;
dims
    : NUM                       { $$ = arg_push((ArgList){0}, (Arg){.val = $1}); }
    | dims ',' NUM              { $$ = arg_push($1, (Arg){.val = $3}); }
    ;

/* settings = (key "=" (pipe | list))*     list: `mean = [0.485, 0.456, 0.406]` */
settings
    : %empty                    { $$ = (ArgList){0}; }
    | settings key '=' pipe     { $$ = arg_push($1, (Arg){$2, loc_of(@2), $4}); }
    | settings key '=' shape    { $$ = arg_push($1, (Arg){$2, loc_of(@2), $4}); }
    | settings error            { $$ = $1; }
    ;

/* pipe = expr ("->" expr)* */
pipe
    : expr
    | pipe "->" expr            { $$ = bin('>', $1, $3, @$); }
    ;

/* expr = expr op expr | "-" expr | primary, with * / over + -, @ over both */
expr
    : expr '+' expr             { $$ = bin('+', $1, $3, @$); }
    | expr '-' expr             { $$ = bin('-', $1, $3, @$); }
    | expr '*' expr             { $$ = bin('*', $1, $3, @$); }
    | expr '/' expr             { $$ = bin('/', $1, $3, @$); }
    | expr '@' expr             { $$ = bin('@', $1, $3, @$); }
    | '-' expr %prec NEG        { $$ = ast_new(A_NEG, loc_of(@$)); $$->a = $2; deepen($$, $2); if ($$->depth > MAX_AST_DEPTH) $$ = $2; }
    | primary
    ;

/* primary = number | size | string | name | "_" | name "(" args ")" | "(" pipe ")" */
primary
    : NUM | SIZE | STR | HOLE
    | IDENT                     { $$ = ast_new(A_NAME, loc_of(@1)); $$->str = $1; }
    | IDENT '(' args ')'        { $$ = call($1, $3, @$); }
    | IDENT '(' error ')'       { $$ = call($1, (ArgList){0}, @$); }
    | '(' pipe ')'              { $$ = $2; }
    ;

/* args = (arg ("," arg)*)?   arg = (name "=")? pipe */
args
    : %empty                    { $$ = (ArgList){0}; }
    | arglist
    ;
arglist
    : pipe                      { $$ = arg_push((ArgList){0}, (Arg){.val = $1}); }
    | key '=' pipe              { $$ = arg_push((ArgList){0}, (Arg){$1, loc_of(@1), $3}); }
    | arglist ',' pipe          { $$ = arg_push($1, (Arg){.val = $3}); }
    | arglist ',' key '=' pipe  { $$ = arg_push($1, (Arg){$3, loc_of(@3), $5}); }
    ;

/* key = name | a keyword: `train = idx(...)` in data, `labels = "..."` in idx */
key
    : IDENT
    | "network" { $$ = "network"; } | "input" { $$ = "input"; } | "labels" { $$ = "labels"; }
    | "target" { $$ = "target"; } | "param" { $$ = "param"; } | "output" { $$ = "output"; }
    | "block" { $$ = "block"; } | "loss" { $$ = "loss"; } | "train" { $$ = "train"; }
    | "data" { $$ = "data"; }
    ;

%%

/* "unexpected X; expected Y or Z", naming the token as written. */
static int yyreport_syntax_error(const yypcontext_t *ctx, yyscan_t scanner, Program *prog)
{
    (void)prog;
    struct LexState *s = yyget_extra(scanner);
    yysymbol_kind_t tok = yypcontext_token(ctx), expected[6];
    int n = yypcontext_expected_tokens(ctx, expected, 6);
    char what[80];
    if (tok == YYSYMBOL_YYEOF)
        snprintf(what, sizeof what, "end of file");
    else
        snprintf(what, sizeof what, "'%.*s'", s->toklen > 40 ? 40 : (int)s->toklen, s->tok);
    char exp[200] = "";
    if (n > 0 && n <= 5) {
        strcat(exp, "; expected ");
        for (int i = 0; i < n; i++) {
            if (i)
                strcat(exp, i == n - 1 ? " or " : ", ");
            strncat(exp, yysymbol_name(expected[i]), 30);
        }
    }
    error_at(loc_of(*yypcontext_location(ctx)), "syntax error: unexpected %s%s", what, exp);
    return 0;
}

Program *parse_program(const Source *src)
{
    Program *p = arena_alloc(sizeof *p);
    p->src = src;
    struct LexState st = {1, 1, "", 0};
    too_deep = false;
    yyscan_t scanner;
    if (yylex_init_extra(&st, &scanner))
        internal_error("cannot start the lexer");
    yy_scan_bytes(src->text, (int)src->size, scanner);
    yyparse(scanner, p);
    yylex_destroy(scanner);
    return p;
}

void yyerror(YYLTYPE *loc, yyscan_t scanner, Program *prog, const char *msg)
{
    (void)scanner, (void)prog;
    if (strcmp(msg, "memory exhausted") == 0)
        error_at(loc_of(*loc), "the program is nested too deeply to parse");
    else
        error_at(loc_of(*loc), "%s", msg);
}

/* test_parser.c: the grammar of parser.y: statements, precedence, calls, blocks,
 * settings, and recovery after syntax errors. */
#include "unit.h"

TestSuite(parser, .fini = unit_teardown);

/* The tree of `e = TEXT`, as --emit=ast prints it. */
static char *tree(const char *expr)
{
    char *text = arena_printf("e = %s\n", expr);
    Program *p = parse(text);
    cr_assert_eq(diag_error_count(), 0, "%s: %s", expr, diags());
    char *t = stmt_text(p, 0);
    cr_assert(strncmp(t, "bind e = ", 9) == 0, "%s", t);
    return t + 9;
}

Test(parser, precedence_of_times_over_plus)
{
    cr_assert_str_eq(tree("a + b * c"), "(+ a (* b c))");
    cr_assert_str_eq(tree("a * b + c"), "(+ (* a b) c)");
    cr_assert_str_eq(tree("a - b / c"), "(- a (/ b c))");
}

Test(parser, matmul_binds_tighter_than_plus_and_times)
{
    cr_assert_str_eq(tree("W @ x + b"), "(+ (@ W x) b)");
    cr_assert_str_eq(tree("b + W @ x"), "(+ b (@ W x))");
    cr_assert_str_eq(tree("2 * W @ x"), "(* 2 (@ W x))");
}

Test(parser, left_associative)
{
    cr_assert_str_eq(tree("a - b - c"), "(- (- a b) c)");
    cr_assert_str_eq(tree("a / b / c"), "(/ (/ a b) c)");
    cr_assert_str_eq(tree("A @ B @ c"), "(@ (@ A B) c)");
}

Test(parser, unary_minus)
{
    cr_assert_str_eq(tree("-x"), "(neg x)");
    cr_assert_str_eq(tree("-x * y"), "(* (neg x) y)");
    cr_assert_str_eq(tree("a - -b"), "(- a (neg b))");
    cr_assert_str_eq(tree("--x"), "(neg (neg x))");
    cr_assert_str_eq(tree("-(a + b)"), "(neg (+ a b))");
}

Test(parser, parentheses)
{
    cr_assert_str_eq(tree("(a + b) * c"), "(* (+ a b) c)");
    cr_assert_str_eq(tree("x -> (relu -> tanh)"), "(-> x (-> relu tanh))");
}

Test(parser, pipelines_are_left_associative_and_loosest)
{
    cr_assert_str_eq(tree("x -> W @ _ + b -> max(0, _)"), "(-> (-> x (+ (@ W _) b)) (call max 0 _))");
    Program *p = parse("e = x -> a -> b\n");
    const Ast *e = stmt_at(p, 0)->expr;
    cr_assert_eq(e->kind, A_PIPE);
    cr_assert_eq(e->a->kind, A_PIPE);
    cr_assert_str_eq(e->b->str, "b");
    cr_assert_str_eq(e->a->a->str, "x");
    cr_assert_str_eq(e->a->b->str, "a");
}

Test(parser, calls_and_keyword_arguments)
{
    cr_assert_str_eq(tree("dense(10, bias = false, name = \"fc1\")"),
                     "(call dense 10 bias=false name=\"fc1\")");
    Program *p = parse("e = conv(6, 5x5, stride = 2, pad = same)\n");
    const Ast *c = stmt_at(p, 0)->expr;
    cr_assert_eq(c->kind, A_CALL);
    cr_assert_str_eq(c->str, "conv");
    cr_assert_eq(c->nargs, 4);
    cr_assert_null(c->args[0].key);
    cr_assert_null(c->args[1].key);
    cr_assert_str_eq(c->args[2].key, "stride");
    cr_assert_eq(c->args[2].keyloc.col, 18);
    cr_assert_str_eq(c->args[3].key, "pad");
    cr_assert_eq(c->args[3].val->kind, A_NAME);
    cr_assert_str_eq(c->args[3].val->str, "same");
}

Test(parser, empty_call_and_nested_calls)
{
    cr_assert_str_eq(tree("f()"), "(call f)");
    cr_assert_str_eq(tree("repeat(2, conv(8, 3x3) -> relu)"), "(call repeat 2 (-> (call conv 8 3x3) relu))");
    cr_assert_str_eq(tree("init(uniform(-0.1, 0.1))"), "(call init (call uniform (neg 0.1) 0.1))");
}

Test(parser, declarations)
{
    Program *p = parse("network lenet\n"
                       "input  x : [1, 28, 28]\n"
                       "labels y : class(10)\n"
                       "param  W : [10, 784] = he\n"
                       "param  b : [10]\n"
                       "output f\n");
    cr_assert_eq(diag_error_count(), 0, "%s", diags());
    const Stmt *s = stmt_at(p, 0);
    cr_assert_eq(s->kind, S_NETWORK);
    cr_assert_str_eq(s->name, "lenet");
    s = stmt_at(p, 1);
    cr_assert_eq(s->kind, S_INPUT);
    cr_assert_eq(s->shape->kind, A_SHAPE);
    cr_assert_eq(s->shape->nargs, 3);
    cr_assert_float_eq(s->shape->args[2].val->num, 28.0, 0);
    s = stmt_at(p, 2);
    cr_assert_eq(s->kind, S_LABELS);
    cr_assert_eq(s->expr->kind, A_CALL);
    cr_assert_str_eq(s->expr->str, "class");
    s = stmt_at(p, 3);
    cr_assert_eq(s->kind, S_PARAM);
    cr_assert_str_eq(s->name, "W");
    cr_assert_eq(s->nameloc.col, 8);
    cr_assert_eq(s->expr->kind, A_NAME);
    cr_assert_str_eq(s->expr->str, "he");
    s = stmt_at(p, 4);
    cr_assert_eq(s->kind, S_PARAM);
    cr_assert_null(s->expr);
    s = stmt_at(p, 5);
    cr_assert_eq(s->kind, S_OUTPUT);
    cr_assert_str_eq(s->name, "f");
    cr_assert_null(s->next);
}

Test(parser, target_and_empty_shape)
{
    Program *p = parse("target t : [3]\nparam s : []\n");
    cr_assert_eq(diag_error_count(), 0, "%s", diags());
    cr_assert_eq(stmt_at(p, 0)->kind, S_TARGET);
    cr_assert_eq(stmt_at(p, 0)->shape->nargs, 1);
    cr_assert_eq(stmt_at(p, 1)->shape->nargs, 0);
}

Test(parser, bind_and_pipe_statements)
{
    Program *p = parse("h = x -> dense(100)\nx -> dense(10) -> f\nloss = softmax_cross_entropy(f, y)\n");
    cr_assert_eq(diag_error_count(), 0, "%s", diags());
    cr_assert_eq(stmt_at(p, 0)->kind, S_BIND);
    cr_assert_str_eq(stmt_at(p, 0)->name, "h");
    cr_assert_eq(stmt_at(p, 1)->kind, S_PIPE);
    cr_assert_eq(stmt_at(p, 1)->loc.line, 2);
    cr_assert_eq(stmt_at(p, 2)->kind, S_LOSS);
    cr_assert_str_eq(stmt_text(p, 2), "loss = (call softmax_cross_entropy f y)");
}

Test(parser, block_parameters)
{
    Program *p = parse("block cr(c, k) = conv(c, k, pad = same) -> relu\nblock plain = relu -> tanh\n");
    cr_assert_eq(diag_error_count(), 0, "%s", diags());
    const Stmt *s = stmt_at(p, 0);
    cr_assert_eq(s->kind, S_BLOCK);
    cr_assert_str_eq(s->name, "cr");
    cr_assert_eq(s->nparams, 2);
    cr_assert_str_eq(s->params[0], "c");
    cr_assert_str_eq(s->params[1], "k");
    cr_assert_eq(s->paramlocs[1].col, 13);
    cr_assert_str_eq(stmt_text(p, 0), "block cr(c, k) = (-> (call conv c k pad=same) relu)");
    s = stmt_at(p, 1);
    cr_assert_eq(s->kind, S_BLOCK);
    cr_assert_eq(s->nparams, 0);
}

Test(parser, train_settings)
{
    Program *p = parse("train {\n"
                       "  optimizer = sgd(lr = 0.05, momentum = 0.9)\n"
                       "  batch = 64  epochs = 10\n"
                       "  schedule = step(every = 5, factor = 0.1)\n"
                       "}\n");
    cr_assert_eq(diag_error_count(), 0, "%s", diags());
    const Stmt *s = stmt_at(p, 0);
    cr_assert_eq(s->kind, S_TRAIN);
    cr_assert_eq(s->nargs, 4);
    cr_assert_str_eq(s->args[0].key, "optimizer");
    cr_assert_eq(s->args[0].val->kind, A_CALL);
    cr_assert_str_eq(s->args[1].key, "batch");
    cr_assert_eq(s->args[1].keyloc.line, 3);
    cr_assert_eq(s->args[1].keyloc.col, 3);
    cr_assert_str_eq(s->args[2].key, "epochs");
    cr_assert_str_eq(s->args[3].key, "schedule");
}

Test(parser, data_settings)
{
    Program *p = parse("data { test = csv(\"t.csv\", label = 0)  scale = 1 / 255 }\n");
    cr_assert_eq(diag_error_count(), 0, "%s", diags());
    const Stmt *s = stmt_at(p, 0);
    cr_assert_eq(s->kind, S_DATA);
    cr_assert_eq(s->nargs, 2);
    cr_assert_str_eq(s->args[0].key, "test");
    cr_assert_str_eq(s->args[1].key, "scale");
    cr_assert_str_eq(stmt_text(p, 0), "data { test=(call csv \"t.csv\" label=0) scale=(/ 1 255) }");
}

Test(parser, empty_program_and_empty_blocks)
{
    Program *p = parse("");
    cr_assert_eq(diag_error_count(), 0);
    cr_assert_null(p->stmts);
    p = parse("# only a comment\ntrain { }\n");
    cr_assert_eq(diag_error_count(), 0);
    cr_assert_eq(stmt_at(p, 0)->nargs, 0);
}

Test(parser, syntax_error_names_the_token_and_what_was_expected)
{
    parse("input x : [1, 28 28]\n");
    cr_assert_eq(diag_error_count(), 1);
    cr_assert(strstr(diags(), "t.cnn:1:18: error: syntax error: unexpected '28'; expected ',' or ']'"),
              "%s", diags());
}

Test(parser, syntax_error_at_end_of_file)
{
    parse("x -> dense(10) ->");
    cr_assert_eq(diag_error_count(), 1);
    cr_assert(strstr(diags(), "unexpected end of file"), "%s", diags());
}

Test(parser, recovers_after_an_error_and_reports_the_next)
{
    Program *p = parse("input x : [784]\n"
                       "x -> dense(10)) -> h\n"
                       "h -> dense(10 -> f\n"
                       "loss = softmax_cross_entropy(f, y)\n"
                       "labels y : class(10)\n");
    cr_assert_geq(diag_error_count(), 2, "%s", diags());
    cr_assert(strstr(diags(), "t.cnn:2:15: error: syntax error: unexpected ')'"), "%s", diags());
    /* the statements around the errors are kept */
    int labels = 0, inputs = 0;
    for (const Stmt *s = p->stmts; s; s = s->next) {
        labels += s->kind == S_LABELS;
        inputs += s->kind == S_INPUT;
    }
    cr_assert_eq(inputs, 1);
    cr_assert_eq(labels, 1);
}

Test(parser, recovers_inside_a_train_block)
{
    Program *p = parse("train {\n  batch = 64 = 3\n  epochs = 10\n  seed = 1\n  schedule = }\nx -> relu -> f\n");
    cr_assert_eq(diag_error_count(), 2, "%s", diags());
    cr_assert(strstr(diags(), "t.cnn:2:14: error"), "%s", diags());
    cr_assert(strstr(diags(), "t.cnn:5:14: error"), "%s", diags());
    /* the pipeline after the block is kept */
    const Stmt *s = p->stmts;
    while (s && s->next)
        s = s->next;
    cr_assert_not_null(s);
    cr_assert_eq(s->kind, S_PIPE);
}

Test(parser, error_inside_call_arguments_keeps_the_call)
{
    Program *p = parse("e = dense(10 20)\nf = 1\n");
    cr_assert_eq(diag_error_count(), 1, "%s", diags());
    cr_assert_eq(stmt_at(p, 0)->expr->kind, A_CALL);
    cr_assert_str_eq(stmt_at(p, 1)->name, "f");
}

Test(parser, deep_nesting_is_refused_not_a_crash)
{
    enum { N = 1500 };
    char *text = arena_alloc(N + 16);
    strcpy(text, "e = ");
    memset(text + 4, '-', N);
    strcpy(text + 4 + N, "x");
    parse(text);
    cr_assert_eq(diag_error_count(), 1, "%s", diags());
    cr_assert(strstr(diags(), "t.cnn:1:"), "%s", diags());
    cr_assert(strstr(diags(), "an expression nested more than 1000 deep"), "%s", diags());
}

Test(parser, parser_stack_exhaustion_is_reported_as_nesting)
{
    enum { N = 20000 };
    char *text = arena_alloc(2 * N + 16);
    strcpy(text, "e = ");
    char *q = text + 4;
    for (int i = 0; i < N; i++)
        *q++ = '(';
    *q++ = 'x';
    for (int i = 0; i < N; i++)
        *q++ = ')';
    *q = 0;
    parse(text);
    cr_assert_geq(diag_error_count(), 1);
    cr_assert(strstr(diags(), "nested too deeply"), "%s", diags());
    cr_assert(!strstr(diags(), "memory exhausted"), "%s", diags());
}

Test(parser, long_chains_are_refused_not_a_crash)
{
    enum { N = 3000 };
    char *text = arena_alloc(4 * N + 16);
    strcpy(text, "e = x");
    for (int i = 0; i < N; i++)
        strcat(text, " + x");
    parse(text);
    cr_assert_geq(diag_error_count(), 1);
    cr_assert(strstr(diags(), "more than 1000 deep"), "%s", diags());
}

Test(parser, a_statement_may_not_start_with_minus)
{
    /* `a \n -b` continues the expression: one statement, a - b */
    Program *p = parse("e = a\n-b\n");
    cr_assert_eq(diag_error_count(), 0);
    cr_assert_str_eq(stmt_text(p, 0), "bind e = (- a b)");
    cr_assert_null(stmt_at(p, 0)->next);
}

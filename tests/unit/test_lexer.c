/* test_lexer.c: the tokens of language.md "Lexical", seen through the parser's tree. */
#include "unit.h"

TestSuite(lexer, .fini = unit_teardown);

/* The expression bound by the first statement, `e = ...`. */
static Ast *bound(const char *text)
{
    Program *p = parse(text);
    cr_assert_eq(diag_error_count(), 0, "%s", diags());
    const Stmt *s = stmt_at(p, 0);
    cr_assert_eq(s->kind, S_BIND);
    return s->expr;
}

Test(lexer, size_literal_is_one_token)
{
    Ast *e = bound("e = 5x5");
    cr_assert_eq(e->kind, A_SIZE);
    cr_assert_eq(e->h, 5);
    cr_assert_eq(e->w, 5);
    e = bound("e = 2x3");
    cr_assert_eq(e->kind, A_SIZE);
    cr_assert_eq(e->h, 2);
    cr_assert_eq(e->w, 3);
    cr_assert_eq(e->loc.col, 5);
    cr_assert_eq(e->loc.len, 3);
}

Test(lexer, size_literal_inside_a_call)
{
    Ast *e = bound("e = conv(6, 1x1)");
    cr_assert_eq(e->kind, A_CALL);
    cr_assert_eq(e->nargs, 2);
    cr_assert_eq(e->args[1].val->kind, A_SIZE);
    cr_assert_eq(e->args[1].val->h, 1);
    cr_assert_eq(e->args[1].val->w, 1);
}

Test(lexer, size_literal_may_have_a_zero_side)
{
    /* a padding `pad = 1x0`; a kernel of 0x3 is refused later, by conv */
    Ast *e = parse("e = conv(6, 3x3, pad = 1x0)")->stmts->expr;
    cr_assert_eq(diag_error_count(), 0, "%s", diags());
    cr_assert_eq(e->args[2].val->kind, A_SIZE);
    cr_assert_eq(e->args[2].val->h, 1);
    cr_assert_eq(e->args[2].val->w, 0);
}

Test(lexer, size_literal_too_large_is_an_error)
{
    parse("e = conv(6, 3x9999999)");
    cr_assert_eq(diag_error_count(), 1);
    cr_assert(strstr(diags(), "t.cnn:1:13: error: size literal '3x9999999'"), "%s", diags());
}

Test(lexer, integers)
{
    Ast *e = bound("e = 64");
    cr_assert_eq(e->kind, A_NUM);
    cr_assert(e->is_int);
    cr_assert_float_eq(e->num, 64.0, 1e-12);
}

Test(lexer, floats_and_exponents)
{
    static const struct { const char *text; double v; } cases[] = {
        {"e = 0.05", 0.05}, {"e = 1e-4", 1e-4}, {"e = 5e-4", 5e-4},
        {"e = 2.5E+2", 250.0}, {"e = .5", 0.5}, {"e = 3.", 3.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Ast *e = bound(cases[i].text);
        cr_assert_eq(e->kind, A_NUM, "%s", cases[i].text);
        cr_assert(!e->is_int, "%s should not be an integer", cases[i].text);
        cr_assert_float_eq(e->num, cases[i].v, 1e-12, "%s", cases[i].text);
        arena_release();
    }
}

Test(lexer, malformed_number)
{
    parse("e = 12ab");
    cr_assert_eq(diag_error_count(), 1);
    cr_assert(strstr(diags(), "t.cnn:1:5: error: malformed number '12ab'"), "%s", diags());
}

Test(lexer, identifiers_and_keywords)
{
    Program *p = parse("network my_net2\ninput _x1 : [3]\nlabels Y_ : class(2)\n");
    cr_assert_eq(diag_error_count(), 0, "%s", diags());
    cr_assert_eq(stmt_at(p, 0)->kind, S_NETWORK);
    cr_assert_str_eq(stmt_at(p, 0)->name, "my_net2");
    cr_assert_eq(stmt_at(p, 1)->kind, S_INPUT);
    cr_assert_str_eq(stmt_at(p, 1)->name, "_x1");
    cr_assert_eq(stmt_at(p, 2)->kind, S_LABELS);
    cr_assert_str_eq(stmt_at(p, 2)->name, "Y_");
}

Test(lexer, strings_and_escapes)
{
    Ast *e = bound("e = \"a\\\"b\\\\c\"");
    cr_assert_eq(e->kind, A_STR);
    cr_assert_str_eq(e->str, "a\"b\\c");
    e = bound("e = \"\"");
    cr_assert_eq(e->kind, A_STR);
    cr_assert_str_eq(e->str, "");
}

Test(lexer, unknown_escape)
{
    parse("e = \"a\\nb\"");
    cr_assert_eq(diag_error_count(), 1);
    cr_assert(strstr(diags(), "unknown escape '\\n'"), "%s", diags());
}

Test(lexer, unterminated_string)
{
    parse("e = \"abc\nf = 1\n");
    cr_assert_geq(diag_error_count(), 1);
    cr_assert(strstr(diags(), "t.cnn:1:5: error: unterminated string"), "%s", diags());
}

Test(lexer, unicode_arrow_is_arrow)
{
    Program *a = parse("x -> relu -> f\n");
    cr_assert_eq(diag_error_count(), 0);
    char *ascii = stmt_text(a, 0);
    Program *b = parse("x \xE2\x86\x92 relu \xE2\x86\x92 f\n");
    cr_assert_eq(diag_error_count(), 0, "%s", diags());
    cr_assert_str_eq(stmt_text(b, 0), ascii);
    cr_assert_str_eq(ascii, "pipe = (-> (-> x relu) f)");
}

Test(lexer, middle_dot_is_the_placeholder)
{
    Program *p = parse("x -> max(0, \xC2\xB7) -> f\n");
    cr_assert_eq(diag_error_count(), 0, "%s", diags());
    const Ast *call = stmt_at(p, 0)->expr->a->b;
    cr_assert_eq(call->kind, A_CALL);
    cr_assert_eq(call->args[1].val->kind, A_HOLE);
    Ast *e = bound("e = _");
    cr_assert_eq(e->kind, A_HOLE);
}

Test(lexer, columns_count_characters_not_bytes)
{
    /* `→` is three bytes and one column: `relu` starts at column 5. */
    Program *p = parse("x \xE2\x86\x92 relu \xE2\x86\x92 f\n");
    const Ast *pipe = stmt_at(p, 0)->expr;
    cr_assert_eq(pipe->a->b->kind, A_NAME);
    cr_assert_eq(pipe->a->b->loc.col, 5);
    cr_assert_eq(pipe->b->loc.col, 12);
}

Test(lexer, comments_are_ignored)
{
    Program *a = parse("# a comment\nx -> relu # another -> not code\n  -> f # the end\n# last");
    cr_assert_eq(diag_error_count(), 0, "%s", diags());
    cr_assert_str_eq(stmt_text(a, 0), "pipe = (-> (-> x relu) f)");
    cr_assert_null(stmt_at(a, 0)->next);
}

Test(lexer, non_ascii_in_comments_and_strings_is_fine)
{
    Program *p = parse("# \xC3\xA9\xC3\xBC\xC3\x97 \xCE\xBB\ne = \"\xCE\xBB\"\n");
    cr_assert_eq(diag_error_count(), 0, "%s", diags());
    cr_assert_str_eq(stmt_at(p, 0)->expr->str, "\xCE\xBB");
}

Test(lexer, non_ascii_outside_strings_is_an_error)
{
    parse("e = 1 \xC3\x97 2\n");
    cr_assert_eq(diag_error_count(), 1);
    cr_assert(strstr(diags(), "t.cnn:1:7: error: unexpected character '\xC3\x97' outside a string or comment"),
              "%s", diags());
}

Test(lexer, a_line_may_begin_with_an_arrow)
{
    Program *p = parse("x -> conv(6, 5x5)\n  -> relu\n\n  -> f\nloss = l2(weights)\n");
    cr_assert_eq(diag_error_count(), 0, "%s", diags());
    cr_assert_str_eq(stmt_text(p, 0), "pipe = (-> (-> (-> x (call conv 6 5x5)) relu) f)");
    cr_assert_eq(stmt_at(p, 1)->kind, S_LOSS);
    cr_assert_eq(stmt_at(p, 1)->loc.line, 5);
}

Test(lexer, newlines_do_not_end_statements)
{
    Program *p = parse("f = W @\n  x\n  + b\n");
    cr_assert_eq(diag_error_count(), 0, "%s", diags());
    cr_assert_str_eq(stmt_text(p, 0), "bind f = (+ (@ W x) b)");
}

Test(lexer, locations_of_tokens)
{
    Program *p = parse("input x : [784]\n\n  h = x -> dense(100)\n");
    cr_assert_eq(diag_error_count(), 0);
    const Stmt *s = stmt_at(p, 1);
    cr_assert_eq(s->nameloc.line, 3);
    cr_assert_eq(s->nameloc.col, 3);
    const Ast *call = s->expr->b;
    cr_assert_eq(call->kind, A_CALL);
    cr_assert_eq(call->loc.line, 3);
    cr_assert_eq(call->loc.col, 12);
    cr_assert_eq(call->loc.len, 10);
}

Test(lexer, stray_character)
{
    parse("e = 1 $ 2\n");
    cr_assert_geq(diag_error_count(), 1);
    cr_assert(strstr(diags(), "t.cnn:1:7: error: unexpected character '$'"), "%s", diags());
}

Test(lexer, utf8_check)
{
    const Source *s = unit_source("x -> f\n# \xE2\x86\x92 ok\n");
    cr_assert(utf8_check(s));
    s = unit_source("x -> f \xFF\n");
    cr_assert(!utf8_check(s));
    cr_assert(strstr(diags(), "t.cnn:1:8: error: invalid UTF-8 byte 0xFF"), "%s", diags());
    s = unit_source("x -> f \xC0\x80\n");         /* overlong NUL */
    cr_assert(!utf8_check(s));
    s = unit_source("x -> f \xED\xA0\x80\n");     /* a surrogate */
    cr_assert(!utf8_check(s));
}

Test(lexer, nul_byte)
{
    static const char text[] = "x -> f\0 -> g\n";
    unit_source("");
    unit_src = (Source){"t.cnn", text, sizeof text - 1};
    cr_assert(!utf8_check(&unit_src));
    cr_assert(strstr(diags(), "t.cnn:1:7: error: the file contains a NUL byte"), "%s", diags());
}

//! The `#[clawperf::scenario]` attribute, re-exported by the `clawperf` crate.
//!
//! It keeps the function as written and registers it with the harness, so that
//! `clawperf::harness::main()` finds it. Two forms are accepted:
//!
//! - `fn name() -> clawperf::harness::Scenario`: a declarative scenario;
//! - `async fn name(target: clawperf::harness::TargetHandle) -> Result<Measurements, E>`
//!   where `E: Into<BoxError>`: custom traffic, called once per repetition.
//!
//! Arguments: `ignore` (run only with `--ignored` or `--include-ignored`) and, on the
//! `async` form, `repetitions = N` (default 5). Every misuse is a compile error pointing at
//! the offending tokens.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Error, FnArg, Ident, ItemFn, LitInt, ReturnType, parse_macro_input};

/// Registers a performance scenario with `clawperf::harness`.
///
/// See the `clawperf::harness` module for examples of both forms.
#[proc_macro_attribute]
pub fn scenario(args: TokenStream, item: TokenStream) -> TokenStream {
    let function = parse_macro_input!(item as ItemFn);
    let mut options = Options::default();
    let parser = syn::meta::parser(|meta| options.parse(meta));
    let expanded =
        syn::parse::Parser::parse(parser, args).and_then(|()| expand(options, function.clone()));
    match expanded {
        Ok(tokens) => tokens.into(),
        // Keeping the function avoids follow-up errors (unused imports, a missing function)
        // that would bury the real one.
        Err(err) => {
            let mut tokens = err.to_compile_error();
            tokens.extend(function.to_token_stream());
            tokens.into()
        }
    }
}

#[derive(Default)]
struct Options {
    ignore: bool,
    /// The value and its span, for the error on a declarative scenario.
    repetitions: Option<(usize, Span)>,
}

impl Options {
    fn parse(&mut self, meta: syn::meta::ParseNestedMeta) -> syn::Result<()> {
        if meta.path.is_ident("ignore") {
            self.ignore = true;
            Ok(())
        } else if meta.path.is_ident("repetitions") {
            let literal: LitInt = meta.value()?.parse()?;
            let value: usize = literal.base10_parse()?;
            if value == 0 {
                return Err(Error::new(
                    literal.span(),
                    "`repetitions` must be at least 1",
                ));
            }
            self.repetitions = Some((value, literal.span()));
            Ok(())
        } else {
            let name = meta
                .path
                .get_ident()
                .map_or_else(|| "this path".to_owned(), |ident| format!("`{ident}`"));
            Err(meta.error(format!(
                "unknown argument {name} of #[clawperf::scenario]: expected `ignore` or \
                 `repetitions = N`"
            )))
        }
    }
}

fn expand(options: Options, function: ItemFn) -> syn::Result<proc_macro2::TokenStream> {
    let signature = &function.sig;
    if !signature.generics.params.is_empty() || signature.generics.where_clause.is_some() {
        return Err(Error::new(
            signature.generics.span(),
            "a scenario function cannot be generic",
        ));
    }
    if let Some(receiver) = signature.receiver() {
        return Err(Error::new(
            receiver.span(),
            "a scenario must be a free function, not a method",
        ));
    }
    let name = &signature.ident;
    let ignored = options.ignore;
    let private = quote!(::clawperf::harness::__private);

    let body = if signature.asyncness.is_none() {
        if let Some((_, span)) = options.repetitions {
            return Err(Error::new(
                span,
                "`repetitions` applies to `async` scenarios; a declarative scenario sets \
                 them with `Scenario::repetitions`",
            ));
        }
        if let Some(input) = signature.inputs.first() {
            return Err(Error::new(
                input.span(),
                "a declarative scenario takes no arguments: write \
                 `fn name() -> clawperf::harness::Scenario`, or make it \
                 `async fn name(target: TargetHandle)` to drive custom traffic",
            ));
        }
        let ReturnType::Type(_, output) = &signature.output else {
            return Err(Error::new(
                signature.span(),
                "a declarative scenario returns `clawperf::harness::Scenario`: add \
                 `-> Scenario`",
            ));
        };
        // The call carries the return type's span, so a wrong type is reported there.
        let call = Ident::new(&name.to_string(), output.span());
        let checked = quote_spanned! {output.span()=>
            fn checked() -> #private::Scenario {
                #call()
            }
        };
        quote! {
            {
                #checked
                #private::ScenarioBody::Declarative(checked)
            }
        }
    } else {
        let repetitions = options.repetitions.map_or(5, |(value, _)| value);
        let mut inputs = signature.inputs.iter();
        let (Some(FnArg::Typed(input)), None) = (inputs.next(), inputs.next()) else {
            let span = if signature.inputs.is_empty() {
                signature.paren_token.span.join()
            } else {
                signature.inputs.span()
            };
            return Err(Error::new(
                span,
                "an `async` scenario takes exactly one argument: \
                 `target: clawperf::harness::TargetHandle`",
            ));
        };
        let target_type = &input.ty;
        let checked = quote_spanned! {target_type.span()=>
            fn run(target: #private::TargetHandle) -> #private::CustomFuture {
                #private::custom(#name(target))
            }
        };
        quote! {
            {
                #checked
                #private::ScenarioBody::Custom { run, repetitions: #repetitions }
            }
        }
    };

    Ok(quote! {
        #function

        const _: () = {
            #private::submit! {
                #private::Registration {
                    module_path: ::core::module_path!(),
                    function: ::core::stringify!(#name),
                    ignored: #ignored,
                    body: { #body },
                }
            }
        };
    })
}

// Command buf is the buf CLI with only the commands CI runs: format, lint
// and generate. They are buf's own commands, at the version go.mod pins,
// so they behave as in the full CLI (same flags, configuration, rules,
// output and exit codes); what is left out is everything else (the Buf
// Schema Registry, Docker plugin pushes, curl over HTTP/3, the language
// server), which is about 40% of the packages the full CLI compiles.
//
// The module path sits under buf's cmd/buf so that Go's rule for internal
// packages lets it import buf's command packages. It is built locally by
// .ci/gen.sh and never published.
package main

import (
	"context"
	"errors"
	"fmt"

	"buf.build/go/app"
	"buf.build/go/app/appcmd"
	"buf.build/go/app/appext"
	"github.com/bufbuild/buf/cmd/buf/internal/command/format"
	"github.com/bufbuild/buf/cmd/buf/internal/command/generate"
	"github.com/bufbuild/buf/cmd/buf/internal/command/lint"
	"github.com/bufbuild/buf/private/buf/bufcli"
	"github.com/bufbuild/buf/private/buf/bufctl"
	"github.com/bufbuild/buf/private/bufpkg/bufmodule"
	"github.com/bufbuild/buf/private/pkg/slogapp"
)

func main() {
	builder := appext.NewBuilder(
		"buf",
		appext.BuilderWithTimeout(0),
		appext.BuilderWithInterceptor(failure),
		appext.BuilderWithLoggerProvider(slogapp.LoggerProvider),
	)
	appcmd.Main(context.Background(), &appcmd.Command{
		Use:                 "buf",
		Short:               "The Buf CLI's format, lint and generate commands",
		Version:             bufcli.Version,
		BindPersistentFlags: builder.BindRoot,
		SubCommands: []*appcmd.Command{
			format.NewCommand("format", builder),
			generate.NewCommand("generate", builder),
			lint.NewCommand("lint", builder),
		},
	})
}

// failure reports errors as the full CLI does: with the prefix "Failure: ",
// and with the exit code of a file annotation for an import that does not
// exist.
func failure(next func(context.Context, appext.Container) error) func(context.Context, appext.Container) error {
	return func(ctx context.Context, container appext.Container) error {
		err := next(ctx, container)
		if err == nil || err.Error() == "" {
			return err
		}
		if missing, ok := errors.AsType[*bufmodule.ImportNotExistError](err); ok {
			err = app.WrapError(bufctl.ExitCodeFileAnnotation, missing)
		}
		return fmt.Errorf("Failure: %w", err)
	}
}

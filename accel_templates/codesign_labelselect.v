// Top-K label select: (L) values in PE lanes per word -> K indices, descending, ties -> lower
// index first; one index per output word.
//
// A sorted list of K (value, index) registers is updated by insertion, PE elements per input
// word (a combinational chain of PE insertions). An element displaces a slot only if it is
// strictly greater, so equal values keep the earlier (lower) index in front. After L/PE words
// the list is emitted K words in a row, the input stalled meanwhile; then the list is cleared.
module codesign_labelselect #(
    parameter integer L = 10,
    parameter integer PE = 1,
    parameter integer K = 1,
    parameter integer IBITS = 8,
    parameter integer OBITS = 4,
    parameter integer I_SIGNED = 0,
    parameter integer NW = L / PE
) (
    input  wire                 ap_clk,
    input  wire                 ap_rst_n,
    input  wire [PE*IBITS-1:0]  in0_V_TDATA,
    input  wire                 in0_V_TVALID,
    output wire                 in0_V_TREADY,
    output reg  [OBITS-1:0]     out_V_TDATA,
    output reg                  out_V_TVALID,
    input  wire                 out_V_TREADY
);
    localparam integer VB = IBITS + 1;
    localparam integer XB = 32;

    reg signed [VB-1:0] val [0:K-1];
    reg [XB-1:0] idx [0:K-1];
    reg [K-1:0] occ;
    reg [15:0] wcnt;       // input words taken in this frame
    reg [15:0] ocnt;       // output words emitted
    reg emitting;

    wire adv = !out_V_TVALID || out_V_TREADY;
    assign in0_V_TREADY = !emitting;
    wire in_fire = !emitting && in0_V_TVALID;

    // combinational insertion chain
    reg signed [VB-1:0] nval [0:K-1];
    reg [XB-1:0] nidx [0:K-1];
    reg [K-1:0] nocc;
    reg signed [VB-1:0] ev;
    reg [XB-1:0] ei;
    reg [K-1:0] gt;
    integer e, j;
    always @* begin
        for (j = 0; j < K; j = j + 1) begin
            nval[j] = val[j];
            nidx[j] = idx[j];
        end
        nocc = occ;
        for (e = 0; e < PE; e = e + 1) begin
            if (I_SIGNED != 0) ev = {in0_V_TDATA[e*IBITS + IBITS - 1], in0_V_TDATA[e*IBITS +: IBITS]};
            else ev = {1'b0, in0_V_TDATA[e*IBITS +: IBITS]};
            ei = wcnt * PE + e;
            for (j = 0; j < K; j = j + 1) gt[j] = !nocc[j] || (ev > nval[j]);
            for (j = K - 1; j >= 0; j = j - 1) begin
                if (gt[j]) begin
                    if (j > 0 && gt[(j > 0) ? j - 1 : 0]) begin
                        nval[j] = nval[j-1];
                        nidx[j] = nidx[j-1];
                        nocc[j] = nocc[j-1];
                    end else begin
                        nval[j] = ev;
                        nidx[j] = ei;
                        nocc[j] = 1'b1;
                    end
                end
            end
        end
    end

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            occ <= 0; wcnt <= 0; ocnt <= 0; emitting <= 1'b0;
            out_V_TVALID <= 1'b0;
        end else begin
            if (in_fire) begin
                for (j = 0; j < K; j = j + 1) begin
                    val[j] <= nval[j];
                    idx[j] <= nidx[j];
                end
                occ <= nocc;
                if (wcnt == NW - 1) begin
                    wcnt <= 0;
                    emitting <= 1'b1;
                end else begin
                    wcnt <= wcnt + 1'b1;
                end
            end
            if (adv) begin
                out_V_TVALID <= emitting;
                if (emitting) begin
                    out_V_TDATA <= idx[ocnt][OBITS-1:0];
                    if (ocnt == K - 1) begin
                        ocnt <= 0;
                        emitting <= 1'b0;
                        occ <= 0;
                    end else begin
                        ocnt <= ocnt + 1'b1;
                    end
                end
            end
        end
    end
endmodule
